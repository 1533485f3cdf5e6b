"""The numpy forward equals the torch network's on the same weights, and the pipeline ranks the same with either."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recsys.ranking import RankingPipeline
from recsys.ranking.forward import NumpyRanker
from recsys.ranking.model import NetConfig, RankerNet
from tests.ranking.fixtures import make_world, small_params, user_events


def _random_net(content: str, seed: int = 0) -> RankerNet:
    torch.manual_seed(seed)
    net = RankerNet(NetConfig(dim=12, n_features=7, hidden=16, content=content))
    with torch.no_grad():  # fitted weights are not the initial zeros and ones: make every parameter matter
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        net.feat_mean.normal_()
        net.feat_std.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("content", ["light", "none"])
def test_numpy_forward_equals_torch(content: str) -> None:
    net = _random_net(content)
    fwd = NumpyRanker.of(net)
    assert fwd is not None
    lengths, c, d = [5, 0, 1, 9], 11, 12
    b, L = len(lengths), max(lengths)
    g = torch.Generator().manual_seed(1)
    hv, ht, ha = torch.randn(b, L, d, generator=g), torch.randint(0, 7, (b, L), generator=g), torch.rand(b, L,
                                                                                                       generator=g)
    cv, cf = torch.randn(b, c, d, generator=g), torch.randn(b, c, 7, generator=g) * 3
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        want = net(hv, ht, ha, mask, cv, cf).numpy()
    for i, n in enumerate(lengths):
        got = fwd(hv[i, :n].numpy(), ht[i, :n].numpy(), ha[i, :n].numpy(), cv[i].numpy(), cf[i].numpy())
        assert got.shape == (c,)
        np.testing.assert_allclose(got, want[i], atol=1e-5, rtol=0)


def test_deep_pathway_has_no_numpy_twin() -> None:
    assert NumpyRanker.of(_random_net("deep")) is None


def test_pipeline_ranks_the_same_with_numpy_and_torch() -> None:
    world = make_world()
    pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())
    assert pipe._forward is not None
    torch_pipe = copy.copy(pipe)
    torch_pipe._forward = None  # the torch network, padded into a batch
    hists = [user_events(["dress-red-0", "dress-red-1"]), user_events(["hat-blue-2"]), None,
             user_events(["shoe-green-0", "bag-red-3", "shoe-green-1", "shoe-green-2"])]
    for h in hists:
        fast, slow = pipe.recommend(h, k=10, explain=True), torch_pipe.recommend(h, k=10, explain=True)
        assert [r.item_id for r in fast] == [r.item_id for r in slow]
        np.testing.assert_allclose([r.score for r in fast], [r.score for r in slow], atol=1e-5, rtol=0)
