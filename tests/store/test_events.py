from __future__ import annotations

from pathlib import Path

from recsys.config import Settings
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.queries import events_frame
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
