"""A request reads a bounded history: the latest ``ranking.max_events`` events, in time order, whatever the driver
(loop reads and SQLAlchemy alike), and the oldest id of all of them only when that read was cut."""

from __future__ import annotations

from pathlib import Path

from recsys.config import Settings
from recsys.serving.requests import read_history, run_reads
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.queries import latest_user_events, user_event_records, user_event_records_of
from tests.conftest import run_async
from tests.store.fixtures import write_hm


def _stored(store: Store, settings: Settings, tmp_path: Path) -> list[tuple[object, ...]]:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    items = ["0108775015", "0108775044"]
    days = [f"2024-05-{d:02d}T10:00:00" for d in (9, 1, 3, 3, 3, 7, 2)]  # out of order, and one time shared
    got = ingest_events(store, [{"user_id": "u", "item_id": items[n % 2], "type": "view", "timestamp": ts,
                                 "event_id": f"e{n}"} for n, ts in enumerate(days)])
    assert {r.status for r in got} == {"stored"}
    with store.reading() as c:
        return list(user_event_records(c, "u"))


def test_the_latest_events_in_time_order_on_every_path(store: Store, settings: Settings, tmp_path: Path) -> None:
    everything = _stored(store, settings, tmp_path)
    assert len(everything) == 7
    for n in (1, 3, 4, 7, 50):
        want = everything[-n:]
        with store.reading() as c:
            assert user_event_records(c, "u", latest=n) == want
        rows = run_async(store.fetch(latest_user_events(n), {"user_id": "u"}))
        assert user_event_records_of(rows, newest_first=True) == want
        assert user_event_records_of(store.read(latest_user_events(n), {"user_id": "u"}), newest_first=True) == want


def test_a_cut_read_still_knows_the_oldest_event(store: Store, settings: Settings, tmp_path: Path) -> None:
    everything = _stored(store, settings, tmp_path)
    oldest = min(int(r[4]) for r in everything)  # not the first in time: the events came out of order
    reads: list[object] = []

    def read(statement: object, params: dict[str, object]) -> list[tuple[object, ...]]:
        reads.append(statement)
        return store.read(statement, params)  # type: ignore[arg-type]

    cut = run_reads(read_history({"user_id": "u"}, 3), read)
    assert cut.records == everything[-3:] and cut.first_id == oldest and len(reads) == 2
    reads.clear()
    whole = run_reads(read_history({"user_id": "u"}, 8), read)  # fewer than asked: not cut, no second read
    assert whole.records == everything and whole.first_id == oldest and len(reads) == 1
    assert run_reads(read_history({"user_id": "u"}, None), read) == whole
    assert run_reads(read_history({"user_id": "nobody"}, 3), read) == ([], None)
