"""``--now`` of ``recsys recommend`` and ``recommend-batch`` is read as an event's timestamp and ``--since`` are:
ISO 8601 (naive = UTC) or unix seconds. It refused unix seconds altogether (``fromisoformat``), so a number copied
from an event or an API call could not be replayed; milliseconds are refused with the events' "divide by 1000"."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from recsys.cli import _register_commands, app, pipeline
from recsys.serving import batch

if not any(c.name == "recommend" for c in app.registered_commands):
    _register_commands()  # what `main()` does before running the app

AT = datetime(2026, 3, 1, 8, 0)  # 1772352000 in unix seconds


class _Stop(Exception):
    """Raised by the stand-in batch writer once it has seen its ``now``."""


@pytest.fixture
def seen(home: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``now`` each list was asked for, by a recommender that lists nothing."""
    got: list[Any] = []

    def buy_again(user_id: str, k: int, *, now: Any = None) -> list[Any]:
        got.append(now)
        return []

    def write_lists(*a: Any, now: Any = None, **kw: Any) -> Any:
        got.append(now)
        raise _Stop

    rec = SimpleNamespace(buy_again=buy_again, catalogue=None, store=None,
                          generations=SimpleNamespace(current=lambda: SimpleNamespace(ranker=None)))
    monkeypatch.setattr(pipeline, "_recommender", lambda: rec)
    monkeypatch.setattr(batch, "write_lists", write_lists)
    return got


def _args(command: str, now: str, tmp_path: Path) -> list[str]:
    if command == "recommend":
        return ["recommend", "user-0001", "--buy-again", "--json", "--now", now]
    return ["recommend-batch", str(tmp_path / "out.jsonl"), "--now", now]


@pytest.mark.parametrize("command", ["recommend", "recommend-batch"])
def test_unix_seconds_are_the_same_time_as_iso(command: str, seen: list[Any], tmp_path: Path) -> None:
    for now in ("1772352000", "1772352000.0", "2026-03-01T08:00:00", "2026-03-01T10:00:00+02:00",
                "2026-03-01T08:00:00Z"):
        CliRunner().invoke(app, _args(command, now, tmp_path))
    assert seen == [AT] * 5  # naive UTC, as the store keeps times


@pytest.mark.parametrize("command", ["recommend", "recommend-batch"])
def test_milliseconds_and_times_out_of_range_are_refused(command: str, seen: list[Any], tmp_path: Path) -> None:
    for now, said in [("1772352000000", "divide by 1000"), ("99999999999", "1970..2200"),
                      ("1960-01-01", "1970..2200"), ("yesterday", "unparseable timestamp 'yesterday'"),
                      ("", "--now is empty")]:
        res = CliRunner().invoke(app, _args(command, now, tmp_path))
        assert res.exit_code == 2, (now, res.output)
        flat = " ".join(res.output.replace("│", " ").split())
        assert "--now" in flat and said in flat and "send ISO 8601" in flat, (now, flat)
    assert seen == []
