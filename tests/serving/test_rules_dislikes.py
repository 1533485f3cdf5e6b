"""Exploration and pins never bring back an item the user disliked (DESIGN §3): ``with_rules`` bans the dislikes
that a stored user's :class:`~recsys.ranking.history.History` keeps apart from its positive rows."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from recsys.ranking.history import History
from recsys.serving.results import ScoredItem
from recsys.serving.rules import ListRules, with_rules

IDS = [f"i{n}" for n in range(40)]


def _ranker() -> Any:
    """What with_rules reads of a ranker: its item table and recent popularity (all equal: all long tail)."""
    n = len(IDS)
    table = SimpleNamespace(ids=IDS, index={i: r for r, i in enumerate(IDS)}, available=np.ones(n, bool),
                            category=np.full(n, -1), category_names=None)
    return SimpleNamespace(table=table, stats=SimpleNamespace(pop_at=lambda now: np.zeros(n)))


def _history(liked: list[int], disliked: list[int]) -> History:
    z = np.zeros(len(liked))
    return History(np.array(liked, np.int64), z.astype(np.int64), z, z, disliked=np.array(disliked, np.int64),
                   disliked_ts=np.zeros(len(disliked)))


def test_exploration_and_pins_leave_out_disliked_items() -> None:
    ranker, disliked = _ranker(), list(range(10, 40))
    hist = _history([0], disliked)
    ranked = [ScoredItem(IDS[r], float(10 - r), ["ranker"]) for r in range(1, 10)]
    banned = {IDS[r] for r in disliked}
    for seed in range(20):
        out = with_rules(ranked, 9, ListRules.of(exploration=1.0), ranker, hist, set(), 0.0, seed)
        assert not {it.item_id for it in out} & banned, seed
    pinned = with_rules(ranked, 9, ListRules.of(pins={IDS[12]: 1, IDS[0]: 2}), ranker, hist, set(), 0.0, 0)
    assert [it.item_id for it in pinned] == [it.item_id for it in ranked]  # the dislike and the liked item: left out
