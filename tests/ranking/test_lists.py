"""Shopper-list caps: few repeats, few variants of one product, the liked item never a new pick."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking import RankingPipeline
from recsys.ranking.lists import ListPolicy, compose
from tests.ranking.fixtures import World, make_world, small_params, user_events


def test_compose_caps_repeats_and_groups_in_ranked_order() -> None:
    owned = np.zeros(10, bool)
    owned[[0, 1, 2, 3]] = True  # the four best are the user's own items
    group = np.array([-1, -1, -1, -1, 7, 7, 7, -1, -1, -1])
    got = compose(list(range(10)), 4, owned, group, ListPolicy(max_repeat_share=0.25, max_per_group=2))
    assert got == [0, 4, 5, 7]  # one repeat (25% of 4), two of group 7, order kept
    assert compose(list(range(10)), 4, owned, group, ListPolicy()) == [0, 1, 2, 3]


def test_compose_fills_from_skipped_when_nothing_else_is_left() -> None:
    owned = np.ones(3, bool)
    got = compose([2, 0, 1], 3, owned, None, ListPolicy(max_repeat_share=0.0))
    assert got == [2, 0, 1]  # a short list would be worse than repeats


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def test_pipeline_caps_repeats_and_drops_the_liked_item(world: World) -> None:
    pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())
    bought = ["dress-red-0", "dress-red-1", "dress-red-2", "dress-red-3", "dress-red-4"]
    hist = user_events(bought + bought)  # bought twice each: repeats rank high
    free = [r.item_id for r in pipe.recommend(hist, k=8, policy=ListPolicy())]
    assert sum(i in bought for i in free) >= 3, free
    capped = [r.item_id for r in pipe.recommend(hist, k=8, policy=ListPolicy(max_repeat_share=0.25))]
    assert len(capped) == 8 and sum(i in bought for i in capped) <= 2, capped
    liked = user_events(["hat-green-0"], types=["like"])
    assert "hat-green-0" not in [r.item_id for r in pipe.recommend(liked, k=8, policy=ListPolicy(0.25, 2))]
    assert "hat-green-0" in [r.item_id for r in pipe.recommend(liked, k=8, policy=ListPolicy(),
                                                               allowed=["hat-green-0"])]


def test_similar_source_adds_the_closest_unsold_items(world: World) -> None:
    from recsys.ranking.candidates import CandidateGenerator

    pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())
    gen: CandidateGenerator = pipe._gen
    latest = np.array([0])
    unsold = np.zeros(pipe.table.n, bool)
    far = int(np.argmin(pipe.table.content @ pipe.table.content[0]))
    unsold[far] = True
    plain = gen.similar(latest, 5)
    both = gen.similar(latest, 5, unsold, 3)
    assert far not in plain and list(both[:5]) == list(plain) and both[5] == far


def test_explanations_name_the_event_behind_them(world: World) -> None:
    pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())
    hist = user_events(["dress-red-0", "dress-red-1"], types=["purchase", "view"])
    recs = pipe.recommend(hist, k=10, explain=True, policy=ListPolicy())
    by_id = {r.item_id: r.explanation or {} for r in recs}
    for r in recs:
        e = r.explanation or {}
        assert e["reason"] in ("repeat", "similar")
        assert e["because_event"]["type"] in ("purchase", "view") and e["because_event"]["date"].startswith("2024-03")
    if "dress-red-0" in by_id:  # its own purchase: explained by that purchase, not by a look-alike
        e = by_id["dress-red-0"]
        assert e["reason"] == "repeat" and e["because_event"]["type"] == "purchase"
    assert (pipe.recommend(None, k=3, explain=True)[0].explanation or {})["reason"] == "popular"
