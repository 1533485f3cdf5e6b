"""`recsys recommend UNKNOWN --buy-again` said "has no history before that time" with no time given, and never that
the id has no stored events or which stored id it resembles (as plain `recommend` does)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from recsys.cli import _register_commands, app, pipeline
from recsys.config import get_settings
from recsys.store import Store

if not any(c.name == "recommend" for c in app.registered_commands):
    _register_commands()  # what `main()` does before running the app


@pytest.fixture
def runner(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A store with user-0001's events (from 2026-03-01) and a recommender whose buy-again list is empty."""
    (tmp_path / "items.csv").write_text("item_id,title\na,A\n")
    (tmp_path / "events.csv").write_text("user_id,item_id,type,timestamp\nuser-0001,a,purchase,2026-03-01\n")
    runner = CliRunner()
    for kind in ("items", "events"):
        assert runner.invoke(app, ["import", kind, str(tmp_path / f"{kind}.csv")]).exit_code == 0
    store = Store.open(get_settings())
    ranker = SimpleNamespace(repurchase=True)
    rec: Any = SimpleNamespace(store=store, buy_again=lambda *a, **kw: [],
                               generations=SimpleNamespace(current=lambda: SimpleNamespace(ranker=ranker)))
    monkeypatch.setattr(pipeline, "_recommender", lambda: rec)
    return runner


def test_an_unknown_id_is_named_with_the_stored_ids_it_resembles(runner: CliRunner) -> None:
    res = runner.invoke(app, ["recommend", "user-001", "--buy-again"])
    assert res.exit_code == 0, res.output
    assert res.stdout == ("nothing to buy again: 'user-001' has no stored events (did you mean 'user-0001'?)\n")
    as_json = runner.invoke(app, ["recommend", "user-001", "--buy-again", "--json"])
    assert json.loads(as_json.stdout.splitlines()[-1]) == []
    assert "'user-001' has no stored events (did you mean 'user-0001'?)" in as_json.stderr


def test_before_now_only_when_now_was_given(runner: CliRunner) -> None:
    cut = runner.invoke(app, ["recommend", "user-0001", "--buy-again", "--now", "2026-01-01T00:00"])
    assert "'user-0001' has no history before --now 2026-01-01T00:00" in cut.stdout
    plain = runner.invoke(app, ["recommend", "user-0001", "--buy-again"]).stdout
    assert "before" not in plain and "none of 'user-0001''s items can be listed again" in plain
