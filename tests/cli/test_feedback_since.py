"""`recsys feedback report --since ""` (an unset shell variable in a cron line) is refused like the API's `since=`,
not answered with the all-time report."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.store import Store
from tests.conftest import run_main


def test_an_empty_since_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    Store.open(Settings(home=tmp_path / "home")).dispose()  # a store to report on: the all-time report was given
    code, err = run_main(monkeypatch, capsys, "feedback", "report", "--since", "", "--json")
    assert code == 2
    assert err.strip().splitlines() == ["error [invalid]: since '' is not a time: use ISO 8601 (e.g. "
                                        "2026-12-01T00:00:00Z) or unix seconds; a time out of range is refused too"]
