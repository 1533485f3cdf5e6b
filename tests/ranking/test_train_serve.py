"""Training and serving show the network the same inputs: a candidate's lists, ranks and features must not depend on
how the request was excluded or filtered beyond the items it removes, and what training never varied must not move a
served score."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recsys.ranking import RankingPipeline
from recsys.ranking.candidates import SOURCES
from recsys.ranking.context import make_context
from recsys.ranking.features import FEATURES
from recsys.ranking.history import history_from_frame
from recsys.ranking.lists import ListPolicy
from recsys.ranking.pipeline import _Request
from recsys.ranking.train import anchor_candidates
from tests.ranking.fixtures import make_world, small_params, user_events

HISTORY = ["dress-red-0", "dress-red-1", "shoe-blue-2"]


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    return make_world()


@pytest.fixture(scope="module")
def pipe(world) -> RankingPipeline:  # type: ignore[no-untyped-def]
    return RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())


def test_excluding_an_item_no_list_reaches_leaves_the_list_unchanged(world, pipe: RankingPipeline) -> None:
    """Any exclusion used to make every source fetch 2k more items, so the network met ranks (and lists) it was never
    trained on, and excluding an unrelated item reordered the list."""
    h = user_events(HISTORY)
    base = [r.item_id for r in pipe.recommend(h, k=10)]
    reached = {r.item_id for r in pipe.recommend(h, k=len(world.vectors.item_ids))[:40]}
    far = next(i for i in reversed(world.vectors.item_ids) if i not in reached)
    assert [r.item_id for r in pipe.recommend(h, k=10, exclude={far})] == base
    assert base[0] not in [r.item_id for r in pipe.recommend(h, k=10, exclude={base[0]})]


def test_a_filter_ranks_each_source_among_the_allowed_items(world, pipe: RankingPipeline) -> None:
    """With a mask, a source's list is its first k allowed items, ranked 0..k-1 among them, as in training."""
    h = history_from_frame(user_events(HISTORY), pipe.table)
    allowed = np.array([i.startswith("shoe-") for i in pipe.table.ids])
    ctx = make_context(h, float(h.ts[-1]) + 1, pipe.stats, pipe.params)
    cands = pipe._gen.generate(ctx, set(), 20, allowed)
    assert len(cands) and allowed[cands.rows].all()
    present = cands.flags > 0
    for j, name in enumerate(SOURCES):
        k = getattr(pipe.params, f"{name}_k", None)
        if k and present[:, j].any():  # at most k per list, ranked among the allowed items: none beyond k - 1
            assert cands.ranks[present[:, j], j].max() <= k - 1, name


@pytest.mark.parametrize("repurchase", [True, False])
def test_training_anchors_get_the_candidates_a_served_request_gets(world, repurchase: bool) -> None:
    """Without repurchase, training used to rank the sources with the shopper's own items in them and drop those
    afterwards, while serving excludes them before ranking: the same item had another rank in each."""
    pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params(repurchase=repurchase))
    assert pipe.repurchase is repurchase
    h = history_from_frame(user_events([*HISTORY, "hat-green-1"], types=["purchase"] * 3 + ["dislike"]), pipe.table)
    assert len(h.disliked)
    now = float(h.ts[-1]) + 1.0
    trained = anchor_candidates(pipe._gen, make_context(h, now, pipe.stats, pipe.params), pipe.table, repurchase)
    exclude = set() if repurchase else {pipe.table.ids[r] for r in h.rows}
    served, _ = pipe._prepare(_Request(h, now, 20, exclude, None, 0.0, False, None, ListPolicy()))
    np.testing.assert_array_equal(trained.rows, served.rows)
    np.testing.assert_array_equal(trained.ranks, served.ranks)
    np.testing.assert_array_equal(trained.flags, served.flags)


def test_features_constant_in_training_move_no_served_score(world) -> None:
    """No item is new when the ranker is fitted, so the new-item features are constant in training and their
    weights stay at their random start: at serving they shifted every new item's score by a seed-chosen amount."""
    idx = {n: i for i, n in enumerate(FEATURES)}
    for seed in (0, 3):
        pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params(seed=seed))
        h = history_from_frame(user_events(["dress-red-0", "dress-red-1"]), pipe.table)
        cands, ex = pipe._prepare(_Request(h, float(h.ts[-1]) + 1, 10, set(), None, 0.0, False, None, ListPolicy()))
        as_new = copy.deepcopy(ex)
        as_new.feats[:, idx["unknown_at_fit"]] = 1.0
        as_new.feats[:, idx["src_new"]] = 1.0
        as_new.feats[:, idx["rank_new"]] = 0.0
        for runtime in ("numpy", "torch"):
            before = pipe.scores([ex], [cands], runtime=runtime)[0]
            after = pipe.scores([as_new], [cands], runtime=runtime)[0]
            np.testing.assert_allclose(after, before, atol=1e-6)
        # every weight finite: an older release, after `recsys db downgrade`, refuses +inf as a damaged ranker
        assert pipe.net is not None and all(bool(torch.isfinite(t).all()) for t in pipe.net.state_dict().values())
