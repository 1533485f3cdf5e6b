"""`recsys feedback trim`: served lists (and, when asked, impression events) stored before a cut are deleted in
short batches; newer ones, and every other event, stay; a dry run deletes nothing; a retention under a day is refused
(SQLite, and PostgreSQL when RECSYS_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from recsys.errors import ValidationFailed
from recsys.feedback.retention import trim
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.tables import Event, ServedList, utcnow
from tests.conftest import run_cli
from tests.store.fixtures import write_hm

A, B = "0108775015", "0108775044"


def _fill(store: Store, tmp_path: Path) -> None:
    """Five old and two new served lists; an old and a new impression; an old click."""
    run_import(store, "hm", write_hm(tmp_path / "hm"))
    now = utcnow()
    with store.session() as s:
        for i in range(7):
            s.add(ServedList(id=f"r{i}", source="personal", user_id="u", item_ids=[A], size=1,
                             created_at=now - timedelta(days=100 if i < 5 else 1)))
    ingest_events(store, [{"user_id": "u", "item_id": A, "type": "impression", "event_id": "old-imp"},
                          {"user_id": "u", "item_id": B, "type": "click", "event_id": "old-click"},
                          {"user_id": "u", "item_id": B, "type": "impression", "event_id": "new-imp"}])
    with store.session() as s:  # stored long ago, as a retention run would meet them
        s.execute(update(Event).where(Event.client_event_id.in_(["old-imp", "old-click"]))
                  .values(created_at=now - timedelta(days=100)))


def _counts(store: Store) -> tuple[list[str], list[str]]:
    with store.session() as s:
        lists = sorted(s.scalars(select(ServedList.id)))
        kinds = sorted(f"{t}:{e}" for t, e in s.execute(select(Event.type, Event.client_event_id)
                                                       .where(Event.client_event_id.like("%-%"))))
    return lists, kinds


def test_old_served_lists_go_in_batches_and_the_rest_stays(store: Store, tmp_path: Path) -> None:
    _fill(store, tmp_path)
    seen: list[tuple[str, int]] = []
    dry = trim(store, 30, impressions=True, dry_run=True)
    assert (dry.served_lists, dry.impressions) == (5, 1) and len(_counts(store)[0]) == 7  # nothing deleted
    report = trim(store, 30, impressions=True, batch=2, progress=lambda t, n: seen.append((t, n)))
    assert (report.served_lists, report.impressions) == (5, 1)
    assert seen == [("served_lists", 2), ("served_lists", 4), ("served_lists", 5), ("impressions", 1)]
    assert _counts(store) == (["r5", "r6"], ["click:old-click", "impression:new-imp"])


def test_impressions_stay_unless_asked_and_a_short_retention_is_refused(store: Store, tmp_path: Path) -> None:
    _fill(store, tmp_path)
    assert trim(store, 30).impressions == 0
    assert "impression:old-imp" in _counts(store)[1]
    for days in (0.5, 0.0, float("nan"), 1e6, float("inf")):
        with pytest.raises(ValidationFailed, match="at least 1 day and at most 36,500"):
            trim(store, days)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(ServedList)) == 2


def test_the_command(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.config import get_settings

    store = Store.open(get_settings())
    _fill(store, tmp_path)
    store.dispose()
    code, out, _ = run_cli(monkeypatch, capsys, "feedback", "trim", "--older-than", "30", "--dry-run")
    assert code == 0 and "would delete 5 served list(s)" in out and "nothing was deleted" in out
    code, out, _ = run_cli(monkeypatch, capsys, "feedback", "trim", "--older-than", "30", "--impressions", "--json")
    assert code == 0
    assert {k: v for k, v in json.loads(out.splitlines()[-1]).items() if k != "cut"} == {
        "served_lists": 5, "impressions": 1, "dry_run": False}
    code, _, err = run_cli(monkeypatch, capsys, "feedback", "trim", "--older-than", "0")
    assert code == 2 and "at least 1 day" in err
    monkeypatch.setenv("RECSYS_FEEDBACK__EXCLUDE_SHOWN_HOURS", "72")
    code, _, err = run_cli(monkeypatch, capsys, "feedback", "trim", "--older-than", "2", "--dry-run")
    assert code == 0 and "EXCLUDE_SHOWN_HOURS is 72" in err
