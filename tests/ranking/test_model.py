"""The ranker network on random tensors: every content pathway gives finite scores, empty histories included."""

from __future__ import annotations

import pytest
import torch

from recsys.ranking.model import NetConfig, RankerNet, listwise_loss


@pytest.mark.parametrize("content", ["light", "deep", "none"])
def test_network_shapes_and_empty_history(content: str) -> None:
    torch.manual_seed(0)
    net = RankerNet(NetConfig(dim=8, n_features=5, hidden=8, content=content))
    b, L, c = 3, 4, 6
    mask = torch.ones(b, L, dtype=torch.bool)
    mask[1] = False  # a user with no history
    mask[2, 2:] = False
    out = net(torch.randn(b, L, 8), torch.randint(0, 7, (b, L)), torch.rand(b, L), mask, torch.randn(b, c, 8),
              torch.randn(b, c, 5))
    assert out.shape == (b, c)
    assert torch.isfinite(out).all()
    labels = torch.zeros(b, c)
    labels[0, 1] = 1
    loss = listwise_loss(out, labels, torch.ones(b, c, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss)


def test_unknown_pathway_is_refused() -> None:
    with pytest.raises(ValueError):
        RankerNet(NetConfig(dim=4, n_features=2, content="huge"))
