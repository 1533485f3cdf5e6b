"""`recsys recommend --explain` for a shopper whose history items are all hidden said "near the mix of items in your
history (no history to compare with)": the line now follows the sources and says the items are no longer shown."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from recsys.cli import _register_commands, app
from recsys.cli import pipeline as cli_pipeline
from recsys.cli.pipeline import _reason
from recsys.serving.reasons import history_state
from recsys.serving.results import ScoredItem

if not any(c.name == "recommend" for c in app.registered_commands):
    _register_commands()  # what `main()` does before running the app

AT = datetime(2026, 3, 1)
FROM_HIDDEN = {"reason": "popular", "because_of": None, "sources": ["interest", "content", "cooc"]}


def test_history_state() -> None:
    bought = [("lamp", "purchase", None, AT, 1)]
    assert history_state([], frozenset()) == "none"
    assert history_state([("lamp", "dislike", None, AT, 1)], frozenset()) == "none"  # nothing liked
    assert history_state(bought, frozenset()) == "shown"
    assert history_state(bought, frozenset({"lamp"})) == "gone"
    assert history_state([*bought, ("hat", "view", None, AT, 2)], frozenset({"lamp"})) == "shown"


def test_a_line_never_cites_the_history_and_denies_it() -> None:
    line = _reason(FROM_HIDDEN, {}, "gone")
    assert line == "other shoppers with your items had it too; near the mix of items in your history (the items in " \
                   "your history are no longer shown)"
    trending = {"reason": "popular", "because_of": None, "sources": ["trending", "popular"]}
    assert _reason(trending, {}, "shown") == "trending now; popular with everyone"  # a shopper with a history
    assert _reason(trending, {}, "none").endswith("(no history to compare with)")


def test_recommend_says_the_history_items_are_no_longer_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command itself: the user's only purchase is hidden; the ranker's picks come from it."""
    from recsys.config import get_settings
    from recsys.store import queries

    rec = SimpleNamespace(store=SimpleNamespace(reading=nullcontext), removed_items=lambda: frozenset({"lamp"}),
                          recommend=lambda *a, **kw: [ScoredItem("desk", 2.0, FROM_HIDDEN["sources"],
                                                                 explanation=dict(FROM_HIDDEN))])
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    monkeypatch.setattr(cli_pipeline, "_recommender", lambda: rec)
    monkeypatch.setattr(cli_pipeline, "_titles", lambda rec, ids: {})
    monkeypatch.setattr(queries, "user_event_records", lambda c, user: [("lamp", "purchase", None, AT, 1)])
    try:
        res = CliRunner().invoke(app, ["recommend", "u1", "--k", "3", "--explain"])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    line = res.output.splitlines()[-1].strip()
    assert line.endswith("(the items in your history are no longer shown)") and "no history to compare" not in line
