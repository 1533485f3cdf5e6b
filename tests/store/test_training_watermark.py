"""The watermark of what training reads leaves out the events of evaluation users (replayed by ``evaluate
--test-events``), on SQLite and PostgreSQL alike: replaying withheld shoppers moves ``events_watermark`` but not it."""

from __future__ import annotations

from sqlalchemy import select

from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers.batch import Writer
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import ImportReport
from recsys.store.queries import (
    EVALUATION_MARK,
    evaluation_users,
    events_frame,
    events_watermark,
    frame_watermark,
    mark_evaluation_users,
    training_watermark,
)
from recsys.store.tables import User


def _events(users: list[str], types: tuple[str, ...] = ("purchase", "view")) -> list[dict[str, str]]:
    return [{"user_id": u, "item_id": f"i{n % 3}", "type": t, "event_id": f"{u}-{t}-{n}",
             "timestamp": f"2024-01-0{n + 1}T10:00:00"} for u in users for n in range(2) for t in types]


def _training_frame_mark(store: Store) -> str:
    with store.session() as s:
        events, held = events_frame(s), evaluation_users(s)
    return frame_watermark(events[~events["user_id"].isin(held)])


def test_training_watermark_leaves_out_evaluation_users(store: Store) -> None:
    with store.session() as s:
        w = Writer(s, ImportReport(source="t"), 100, None)
        for i in ("i0", "i1", "i2"):
            w.item(ItemRecord(external_id=i, title=f"item {i}"))
        w.flush_items()
    with store.session() as s:
        assert training_watermark(s) == events_watermark(s) == "0:None"
    assert all(r.status == "stored" for r in ingest_events(store, _events(["real-1", "real-2"])))
    with store.session() as s:
        real = training_watermark(s)
        assert real == events_watermark(s) == _training_frame_mark(store)
        # attributes of other shapes and keys are no mark
        s.execute(select(User).where(User.external_id == "real-1")).scalar_one().attributes = {"tier": "gold"}
        s.execute(select(User).where(User.external_id == "real-2")).scalar_one().attributes = ["not", "an object"]
    # replayed withheld shoppers, stored after the real ones (their ids are the highest), then marked
    assert all(r.status == "stored" for r in ingest_events(store, _events(["held-1", "held-2"])))
    assert ingest_events(store, _events(["real-2"], ("impression",)))[0].status == "stored"  # trains nothing
    mark_evaluation_users(store, {"held-1", "held-2"}, "heldout.data")
    with store.session() as s:
        assert evaluation_users(s) == {"held-1", "held-2"}
        assert training_watermark(s) == real != events_watermark(s)
        assert set(events_frame(s, training=True)["user_id"]) == {"real-1", "real-2"}
    assert _training_frame_mark(store) == real
    assert ingest_events(store, _events(["real-3"], ("like",)))[0].status == "stored"  # a real event moves it
    with store.session() as s:
        moved = training_watermark(s)
        assert moved != real and moved == _training_frame_mark(store)
        assert moved == frame_watermark(events_frame(s, training=True))
        marks = {u.external_id: u.attributes for u in s.scalars(select(User))}
    assert marks["held-1"] == {EVALUATION_MARK: "heldout.data"} and marks["real-1"] == {"tier": "gold"}
