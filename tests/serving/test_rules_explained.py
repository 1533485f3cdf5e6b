"""Explanations under list rules and removals: an item a pin or exploration put on an explained list is explained as
such (``recsys.serving.rules.explained``), and no explanation names an item that is no longer served
(``recsys.ranking.explain.served_rows``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from recsys.ranking.explain import explain_item, recent_rows
from recsys.ranking.history import History
from recsys.serving.results import ScoredItem
from recsys.serving.rules import ListRules, apply_rules

IDS = [f"i{n}" for n in range(20)]


def _explained(*ids: str) -> list[ScoredItem]:
    """A ranked list as the service explains it (the ranker's explanation plus the index generation)."""
    out = []
    for n, i in enumerate(ids):
        sources = ["cooc"]
        out.append(ScoredItem(i, float(len(ids) - n), sources,
                              {"score": float(len(ids) - n), "sources": sources, "ranker": "ranker-x",
                               "reason": "similar", "because_of": "i0", "index_generation": "gen-7"}))
    return out


def _apply(items: list[ScoredItem], rules: ListRules, seed: int = 0) -> list[ScoredItem]:
    return apply_rules(items, 8, rules, category_of=lambda i: None, known=IDS.__contains__,
                       pool=lambda: IDS[10:], banned=set(), seed=seed)


def test_a_pinned_item_not_ranked_is_explained_as_pinned() -> None:
    out = _apply(_explained(*IDS[1:9]), ListRules.of(pins={"i15": 2}))
    assert out[1].item_id == "i15"
    assert out[1].explanation == {"score": out[1].score, "sources": ["pinned"], "ranker": "ranker-x",
                                  "reason": "pinned", "because_of": None, "index_generation": "gen-7"}
    assert [it.explanation["reason"] for it in out if it.item_id != "i15"] == ["similar"] * 7  # type: ignore[index]


def test_a_ranked_item_a_pin_moved_says_pinned_in_its_explanations_sources() -> None:
    ranked = _explained(*IDS[1:9])
    out = _apply(ranked, ListRules.of(pins={"i6": 1}))
    assert out[0].item_id == "i6" and out[0].sources == ["cooc", "pinned"]
    assert out[0].explanation is not None
    assert out[0].explanation["sources"] == ["cooc", "pinned"] and out[0].explanation["reason"] == "similar"
    assert ranked[5].explanation is not None and ranked[5].explanation["sources"] == ["cooc"]  # not changed in place


def test_explored_items_are_explained_as_exploration() -> None:
    explored = 0
    for seed in range(10):
        for it in _apply(_explained(*IDS[1:9]), ListRules.of(exploration=0.5), seed):
            assert it.explanation is not None and it.explanation["sources"] == it.sources
            if it.sources == ["exploration"]:
                explored += 1
                assert it.explanation["reason"] == "exploration" and it.explanation["because_of"] is None
                assert it.explanation["ranker"] == "ranker-x" and it.explanation["index_generation"] == "gen-7"
    assert explored


def test_a_list_without_explanations_gets_none() -> None:
    plain = [ScoredItem(i, 1.0, ["cooc"]) for i in IDS[1:9]]
    out = _apply(plain, ListRules.of(pins={"i15": 2}, exploration=0.5))
    assert all(it.explanation is None for it in out)


def _table(available: np.ndarray | None = None) -> Any:
    """What explain_item reads of an item table: i1 and i2 point one way (i2 nearer i10), the rest another."""
    n = len(IDS)
    fused = np.zeros((n, 2), np.float32)
    fused[:, 1] = 1.0
    fused[1], fused[2], fused[10] = [0.6, 0.8], [0.9, 0.436], [1.0, 0.0]
    return SimpleNamespace(ids=IDS, fused=fused, text=None, image=None,
                           available=np.ones(n, bool) if available is None else available)


def _history(rows: list[int]) -> History:
    z = np.zeros(len(rows))
    return History(np.array(rows, np.int64), np.full(len(rows), 3, np.int64), z, z + np.arange(len(rows)))


def test_an_explanation_names_only_items_still_served() -> None:
    """A deleted or hidden history item was named "because of" (GET /v1/items answers 404 for it)."""
    hist = _history([1, 2])
    assert explain_item(_table(), hist, 10, 1.0, ["cooc"], "r")["because_of"] == "i2"
    gone = np.ones(len(IDS), bool)
    gone[2] = False
    hidden_at_build = explain_item(_table(gone), hist, 10, 1.0, ["cooc"], "r")
    assert hidden_at_build["because_of"] == "i1" and hidden_at_build["reason"] == "similar"
    assert explain_item(_table(), hist, 10, 1.0, ["cooc"], "r", removed={"i2"})["because_of"] == "i1"
    recent = recent_rows(hist)
    assert explain_item(_table(), hist, 10, 1.0, ["cooc"], "r", recent=recent, removed={"i2"})["because_of"] == "i1"
    none_left = explain_item(_table(), hist, 10, 1.0, ["cooc"], "r", removed={"i1", "i2"})
    assert none_left == {"score": 1.0, "sources": ["cooc"], "ranker": "r", "reason": "popular", "because_of": None}
    repeat = explain_item(_table(), hist, 2, 1.0, ["repurchase"], "r", removed={"i1"})
    assert repeat["reason"] == "repeat" and repeat["because_of"] == "i2"
