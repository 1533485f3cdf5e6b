from __future__ import annotations

from pathlib import Path

from recsys.config import Settings
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.items import set_flags
from recsys.store.queries import events_frame, removed_item_ids, request_state, user_event_records
from tests.store.fixtures import write_hm


def test_ingest_reports_per_event_and_is_idempotent(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    batch = [
        {"user_id": "new-user", "item_id": "0108775015", "type": "like", "event_id": "a"},
        {"user_id": "new-user", "item_id": "0108775015", "type": "like", "event_id": "a"},  # repeated in batch
        {"user_id": "new-user", "item_id": "missing", "type": "view"},
        {"user_id": "new-user", "item_id": "0108775044", "type": "teleport"},
        {"user_id": "new-user", "item_id": "0108775044", "type": "view", "timestamp": "2024-05-01T12:00:00+02:00"},
        {"user_id": "new-user", "item_id": "0108775044", "type": "rating", "value": "nan"},
    ]
    results = ingest_events(store, batch)
    assert [r.status for r in results] == ["stored", "duplicate", "error", "error", "stored", "error"]
    assert "unknown item" in (results[2].error or "") and "event type" in (results[3].error or "")
    again = ingest_events(store, batch[:1])
    assert again[0].status == "duplicate"
    with store.session() as s:
        df = events_frame(s, users=["new-user"])
    assert len(df) == 2
    assert str(df[df.type == "view"].ts.iloc[0]) == "2024-05-01 10:00:00"  # stored as UTC


def test_request_state_reads_event_ids_and_removed_items_in_one_statement(store: Store, settings: Settings,
                                                                           tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    batch = [{"user_id": "u-state", "item_id": i, "type": "view", "event_id": f"s{i}"}
             for i in ("0108775015", "0108775044")]
    ingest_events(store, batch)
    with store.session() as s:
        set_flags(s, ["0108775044"], hidden=True)
        set_flags(s, ["0108775015"], deleted=True)
    with store.reading() as c:
        events, removed = request_state(c, "u-state")
        records = user_event_records(c, "u-state")
        assert sorted(events) == sorted(r[4] for r in records) and len(events) == 2
        assert removed == removed_item_ids(c) == {"0108775044", "0108775015"}
        assert request_state(c, "nobody") == ([], removed)  # an unknown user has no events, same removed set
