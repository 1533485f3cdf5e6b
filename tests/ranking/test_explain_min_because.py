"""A pick is explained by a history item only when it resembles one (``MIN_BECAUSE``, made where explanations are
made): a cold shopper's trending handbag was "similar" to their desk lamp at -0.20 in the API and the library, while
the CLI and the explorer hid it. Below the cut-off the sources are the reason; the closest history item is still
carried, with its similarity (DESIGN decision 9), for a client to weigh."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from recsys.ranking.explain import MIN_BECAUSE, explain_item
from recsys.ranking.history import History

IDS = ["lamp", "bag", "near", "twin"]


def _table() -> Any:
    """lamp (the history) and the picks: bag at -0.2, near just at the cut-off, twin close."""
    def unit(cos: float) -> list[float]:
        return [cos, float(np.sqrt(1.0 - cos * cos))]

    fused = np.array([[1.0, 0.0], unit(-0.2), unit(MIN_BECAUSE + 1e-4), unit(0.9)], np.float32)
    return SimpleNamespace(ids=IDS, fused=fused, text=None, image=None, available=np.ones(len(IDS), bool))


def _bought(*rows: int) -> History:
    z = np.zeros(len(rows))
    return History(np.array(rows, np.int64), np.full(len(rows), 3, np.int64), z, z + np.arange(len(rows)))


@pytest.mark.parametrize(("sources", "reason"), [(["cooc", "trending", "popular"], "history"),
                                                 (["trending", "popular"], "popular")])
def test_an_unlike_pick_is_explained_by_its_sources(sources: list[str], reason: str) -> None:
    e = explain_item(_table(), _bought(0), 1, 2.0, sources, "r")
    assert (e["reason"], e["because_of"], e["similarity"]) == (reason, "lamp", pytest.approx(-0.2, abs=1e-6))
    assert e["because_event"] == {"date": "1970-01-01", "type": "purchase"} and e["score"] == 2.0


def test_a_look_alike_from_the_cut_off_on_is_named() -> None:
    for row in (2, 3):
        e = explain_item(_table(), _bought(0), row, 1.0, ["content"], "r")
        assert e["reason"] == "similar" and e["because_of"] == "lamp" and e["similarity"] >= MIN_BECAUSE


def test_no_history_or_none_still_served_is_the_popular_form() -> None:
    """The documented "popular" form: nothing to compare with, whatever the sources."""
    for hist, removed in ((_bought(), frozenset()), (_bought(0), frozenset({"lamp"}))):
        e = explain_item(_table(), hist, 1, 1.0, ["cooc"], "r", removed=removed)
        assert e["reason"] == "popular" and e["because_of"] is None


def test_one_cut_off_for_every_surface() -> None:
    from recsys.ranking import explain
    from recsys.serving import reasons

    assert reasons.MIN_BECAUSE is explain.MIN_BECAUSE
