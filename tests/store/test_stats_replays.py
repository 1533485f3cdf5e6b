"""`recsys stats` counts the shop's data: users replayed by `recsys evaluate --test-events` (and their events) are
counted apart, under ``evaluation_replays``, as training leaves them out, so an evaluation run moves no shop
figure."""

from __future__ import annotations

from pathlib import Path

from recsys.config import Settings
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.queries import mark_evaluation_users, stats
from tests.store.fixtures import write_hm


def test_replayed_users_are_counted_apart(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    with store.session() as s:
        before = stats(s)
    item = "0108775015"
    got = ingest_events(store, [{"user_id": u, "item_id": item, "type": t, "timestamp": "2024-05-01T10:00:00"}
                                for u, t in (("shop", "view"), ("held-1", "purchase"), ("held-1", "view"),
                                             ("held-2", "view"))])
    assert {r.status for r in got} == {"stored"}
    mark_evaluation_users(store, {"held-1", "held-2"}, "withheld.csv")
    with store.session() as s:
        after = stats(s)
    assert after["users"] == before["users"] + 1 and after["events"] == before["events"] + 1
    shop_by_type = dict(before["events_by_type"])
    shop_by_type["view"] = shop_by_type.get("view", 0) + 1
    assert after["events_by_type"] == shop_by_type
    assert before["evaluation_replays"] == {"users": 0, "events": 0}
    assert after["evaluation_replays"] == {"users": 2, "events": 3}
