"""`recsys recommend --explain` (the README's first command) gives the explorer's reasons: no faint look-alikes."""

from __future__ import annotations

from typing import Any

import pytest

from recsys.cli.pipeline import _print, _reason
from recsys.serving.reasons import MIN_BECAUSE, shows_look_alike
from recsys.serving.results import ScoredItem

TITLES = {"hat-1": ("Northwind basic bucket hat", "hat")}


def similar(similarity: float, sources: list[str]) -> dict[str, Any]:
    return {"reason": "similar", "because_of": "hat-1", "similarity": similarity, "sources": sources,
            "because_event": {"type": "view", "date": "2026-03-21"}, "text_share": 0.55, "image_share": 0.45}


def test_a_faint_look_alike_is_not_the_reason_its_sources_are() -> None:
    # a handbag was "like Northwind basic bucket hat (... similarity 0.07 ...)"
    line = _reason(similar(0.07, ["cooc", "trending", "popular"]), TITLES)
    assert "bucket hat" not in line and "similarity" not in line
    assert line == "other shoppers with your items had it too; trending now"


@pytest.mark.parametrize("similarity", [MIN_BECAUSE, 0.76])
def test_a_close_look_alike_is_named(similarity: float) -> None:
    line = _reason(similar(similarity, ["content"]), TITLES)
    assert line.startswith("like Northwind basic bucket hat (your view 2026-03-21; similarity")


def test_the_cut_off_is_the_explorers() -> None:
    """One number for both: the explorer hides a reason below it, so the CLI must not print it."""
    from recsys.api.web import pages

    assert pages.shows_look_alike is shows_look_alike  # the explorer's test is this module's
    assert "bucket hat" not in _reason(similar(MIN_BECAUSE - 0.01, ["content"]), TITLES)


def test_no_history_and_repeat_reasons() -> None:
    # "popular with everyone (no history to compare with)" was also the fallback for users with a history
    assert _reason({"reason": "popular", "because_of": None, "sources": ["trending", "popular"]}, {}) == \
        "trending now; popular with everyone (no history to compare with)"
    assert _reason({"reason": "repeat", "because_of": "hat-1", "similarity": 1.0,
                    "because_event": {"type": "purchase", "date": "2026-03-01"}}, TITLES) == \
        "repeat: your purchase 2026-03-01"


def test_the_table_names_a_list_rules_source(capsys: pytest.CaptureFixture[str]) -> None:
    """A pinned item's explanation comes from the ranker; the row's sources (with "pinned") say why it is there."""
    row = ScoredItem("bag-9", 2.5, ["pinned"], explanation=similar(0.05, ["cooc"]))
    _print([row], json_out=False)
    assert capsys.readouterr().out.splitlines()[-1].strip() == "pinned at this place by a list rule"
