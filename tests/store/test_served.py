"""The feedback loop's store side: served lists recorded off the request path, impressions kept out of histories,
events attributed to the list they name (SQLite, and PostgreSQL when RECSYS_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.feedback import Served, ServedLog, feedback_report, new_recommendation_id, wilson
from recsys.feedback.served import SERVED_ROWS_PER_STATEMENT
from recsys.ranking.history import history_from_records
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.queries import events_frame, history_mark, user_event_records
from recsys.store.tables import Event, ServedList, utcnow
from tests.store.fixtures import write_hm

A, B, C = "0108775015", "0108775044", "0110065001"


def _served(items: tuple[str, ...], *, user: str | None = "c1", source: str = "recommend", **kw: Any) -> Served:
    return Served(new_recommendation_id(), source, items, user, index_generation="g1", ranker_version="r1", **kw)


def test_lists_are_recorded_in_batches_with_their_items(store: Store) -> None:
    log = ServedLog(store, batch_size=3)
    lists = [_served((A, B)), _served((C,), user=None, source="similar"), _served((B, A, C))]
    assert all(log.record(s) for s in lists)
    assert log.flush()
    with store.session() as s:
        rows = {r.id: r for r in s.scalars(select(ServedList))}
    assert set(rows) == {s.id for s in lists} and len({s.id for s in lists}) == 3
    assert rows[lists[2].id].item_ids == [B, A, C] and rows[lists[2].id].size == 3
    assert rows[lists[1].id].user_id is None and rows[lists[1].id].source == "similar"
    log.close()
    assert log.written == 3 and log.dropped == 0


class CountingStore:
    """A store that counts its write transactions."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.sessions = 0

    @contextmanager
    def session(self) -> Iterator[Any]:
        self.sessions += 1
        with self.inner.session() as s:
            yield s


def test_a_burst_is_written_in_few_transactions_and_flush_cuts_the_linger_short(sqlite_store: Store) -> None:
    counting = CountingStore(sqlite_store)
    log = ServedLog(counting, batch_size=500, linger_s=30.0)  # a linger no test would wait out
    lists = [_served((A, B)) for _ in range(1200)]
    assert all(log.record(s) for s in lists)
    assert log.flush(timeout_s=20)  # returns long before the 30 s linger: flush() wakes the writer
    assert log.written == 1200 and counting.sessions <= 4  # 500 + 500 + 200, maybe split once by the timing
    log.record(_served((C,)))
    log.close(timeout_s=20)
    assert log.written == 1201
    with sqlite_store.session() as s:
        assert len(list(s.scalars(select(ServedList.id)))) == 1201


def test_rows_read_back_exactly_across_statements(store: Store) -> None:
    """The writer binds rows itself (one INSERT per 400 rows, not an executemany): every column must read back
    through the ORM as written, on either database."""
    log = ServedLog(store, batch_size=1000, linger_s=30.0)
    lists = [_served((A, B, C)[: 1 + i % 3], user=None if i % 5 == 0 else f"u{i}", feed_id=f"f{i}" if i % 7 == 0
                     else None, offset=i % 4, experiment="exp" if i % 2 else None, variant="b" if i % 2 else None)
             for i in range(SERVED_ROWS_PER_STATEMENT + 37)]
    lists[1].created_at = lists[1].created_at.replace(microsecond=0)  # no fraction of a second must still parse
    assert all(log.record(s) for s in lists)
    assert log.flush(timeout_s=20) and log.written == len(lists) and log.failed == 0
    with store.session() as s:
        rows = {r.id: r for r in s.scalars(select(ServedList))}
    for x in lists:
        r = rows[x.id]
        assert (r.source, r.user_id, r.feed_id, r.offset, r.item_ids, r.size, r.index_generation, r.ranker_version,
                r.created_at, r.experiment, r.variant) == (x.source, x.user_id, x.feed_id, x.offset,
                                                           list(x.item_ids), len(x.item_ids), "g1", "r1",
                                                           x.created_at, x.experiment, x.variant)
    log.close()


class BlockedStore:
    """A store whose writes wait until ``release`` is set: a database that stopped answering."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.release = threading.Event()
        self.entered = threading.Event()

    @contextmanager
    def session(self) -> Iterator[Any]:
        self.entered.set()
        self.release.wait()
        with self.inner.session() as s:
            yield s


def test_a_full_queue_drops_and_counts_instead_of_blocking(sqlite_store: Store) -> None:
    blocked = BlockedStore(sqlite_store)
    drops: list[int] = []
    log = ServedLog(blocked, queue_size=2, batch_size=1, on_drop=lambda: drops.append(1))
    assert log.record(_served((A,)))
    blocked.entered.wait()  # the writer holds the first list and waits on the database
    kept = [log.record(_served((B,))) for _ in range(10)]  # would hang here if recording waited for the queue
    assert kept == [True, True] + [False] * 8
    assert log.dropped == 8 and len(drops) == 8
    blocked.release.set()
    assert log.flush()
    assert log.written == 3
    log.close()


def test_a_failing_database_loses_lists_not_requests(sqlite_store: Store) -> None:
    class Down:
        @contextmanager
        def session(self) -> Iterator[Any]:
            raise RuntimeError("database is down")
            yield

    log = ServedLog(Down())
    assert log.record(_served((A,)))
    assert log.flush()
    assert log.failed == 1
    log.close()


def test_feeds_and_shown_items_are_read_from_memory_and_store(store: Store, settings: Settings,
                                                               tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    writer = ServedLog(store)
    first = _served((A,), paged=True)
    writer.record(first)
    writer.record(_served((B,), feed_id=first.id, offset=1, paged=True))
    writer.record(_served((C,), user="c2"))
    writer.flush()
    assert writer.feed_items(first.id) == ("c1", [A, B])
    reader = ServedLog(store)  # another replica: nothing in memory
    assert reader.feed_items(first.id) == ("c1", [A, B])
    assert reader.feed_items(new_recommendation_id()) is None
    assert reader.shown_to("c1", 1.0) == {A, B}
    old = _served((C,), created_at=utcnow() - timedelta(hours=5))
    writer.record(old)
    writer.flush()
    assert reader.shown_to("c1", 1.0) == {A, B} and C in reader.shown_to("c1", 6.0)
    ingest_events(store, [{"user_id": "c2", "item_id": A, "type": "impression"}])
    assert reader.shown_to("c2", 1.0) == {A, C}
    # page 3 served by this replica, pages 1 and 2 by the other: all three are the feed, not page 3 alone
    reader.record(_served((C,), feed_id=first.id, offset=2, paged=True))
    assert reader.feed_items(first.id) == ("c1", [A, B, C])
    reader.flush()  # and the replica that served pages 1 and 2 sees page 3 too (it read only its memory)
    assert writer.feed_items(first.id) == ("c1", [A, B, C])
    writer.close()
    reader.close()


def test_a_page_another_process_served_a_moment_ago_is_waited_for(store: Store, settings: Settings,
                                                                  tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    writer = ServedLog(store, linger_s=0.05)
    first = _served((A, B), paged=True)
    writer.record(first)  # not written yet when the other process is asked for page 2
    reader = ServedLog(store, linger_s=2.0)  # looks again for a few of its lingers before saying "unknown"
    assert reader.feed_items(first.id) == ("c1", [A, B])
    writer.close()


def test_impressions_are_no_part_of_a_history(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    with store.reading() as c:
        before_mark = history_mark(c, "c1")
        before = user_event_records(c, "c1")
    results = ingest_events(store, [{"user_id": "c1", "item_id": C, "type": "impression", "position": 0,
                                     "recommendation_id": new_recommendation_id()}])
    assert results[0].status == "stored"
    with store.reading() as c:
        # the cached list's key is unchanged: an impression ranks nothing
        assert user_event_records(c, "c1") == before and history_mark(c, "c1") == before_mark
    with store.session() as s:
        assert "impression" not in set(events_frame(s).type)
        assert list(events_frame(s, types=["impression"]).item_id) == [C]
    # and were one handed to the ranker's history anyway, it is dropped there, not taken as interest
    assert len(history_from_records([(C, "impression", None, utcnow())], _Table())) == 0


class _Table:
    ids = [A, B, C]

    def rows_of(self, ids: Any) -> Any:
        import numpy as np

        return np.array([self.ids.index(i) if i in self.ids else -1 for i in ids], dtype=np.int64)


def test_events_with_a_recommendation_id_are_attributed(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    log = ServedLog(store)
    rec, sim = _served((A, B, C)), _served((B, C), user=None, source="similar")
    log.record(rec)
    log.record(sim)
    log.record(_served((A,)))  # a list nobody answered
    log.flush()
    events = [
        *({"user_id": "c1", "item_id": i, "type": "impression", "recommendation_id": rec.id, "position": p}
          for p, i in enumerate((A, B, C))),
        {"user_id": "c1", "item_id": B, "type": "click", "recommendation_id": rec.id, "position": 1},
        {"user_id": "c1", "item_id": B, "type": "add_to_cart", "recommendation_id": rec.id},
        {"user_id": "c1", "item_id": B, "type": "purchase", "recommendation_id": rec.id},
        {"user_id": "c2", "item_id": C, "type": "like", "recommendation_id": sim.id},
        {"user_id": "c2", "item_id": C, "type": "click", "recommendation_id": sim.id},
        {"user_id": "c2", "item_id": A, "type": "click"},  # not attributed: no list named
        {"user_id": "c2", "item_id": A, "type": "click", "recommendation_id": "unknown-list"},
    ]
    assert [r.status for r in ingest_events(store, events)] == ["stored"] * len(events)
    with store.session() as s:
        stored = s.execute(select(Event.recommendation_id, Event.position).where(Event.type == "click")).all()
    assert (rec.id, 1) in stored
    report = feedback_report(store)
    groups = {g["source"]: g for g in report["groups"]}
    r = groups["recommend"]
    assert (r["lists"], r["items_served"], r["impressions"], r["clicks"], r["add_to_cart"], r["purchases"]) == \
        (2, 4, 3, 1, 1, 1)
    assert r["exposure_basis"] == "impressions" and r["ctr"]["rate"] == pytest.approx(1 / 3)
    assert r["ctr"]["low"] < 1 / 3 < r["ctr"]["high"]
    s_ = groups["similar"]
    assert (s_["lists"], s_["clicks"], s_["likes"], s_["exposures"], s_["exposure_basis"]) == \
        (1, 1, 1, 2, "items_served")
    assert report["totals"]["clicks"] == 2 and report["totals"]["lists"] == 3
    assert r["ranker_version"] == "r1" and r["index_generation"] == "g1"
    later = feedback_report(store, since=utcnow() + timedelta(hours=1))
    assert later["groups"] == [] and later["totals"]["lists"] == 0
    log.close()


def test_wilson_interval_known_values() -> None:
    w = wilson(10, 100)
    assert w["rate"] == pytest.approx(0.1)
    assert w["low"] == pytest.approx(0.0552, abs=1e-4) and w["high"] == pytest.approx(0.1744, abs=1e-4)
    assert wilson(0, 10)["low"] == 0.0 and wilson(10, 10)["high"] == 1.0
    assert wilson(5, 0) == {"rate": None, "low": None, "high": None}
    assert wilson(7, 5)["rate"] == 1.0  # more clicks than exposures is capped, never a rate above 1


def test_feedback_report_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from recsys.cli import feedback
    from recsys.config import get_settings

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "h"))
    get_settings.cache_clear()
    try:
        store = Store.open()
        run_import(store, "hm", write_hm(tmp_path / "hm"), settings=get_settings())
        log = ServedLog(store)
        served = _served((A, B))
        log.record(served)
        log.close()
        ingest_events(store, [{"user_id": "c1", "item_id": B, "type": "click", "recommendation_id": served.id}])
        store.dispose()
        app = typer.Typer()
        feedback.register(app)
        runner = CliRunner()
        r = runner.invoke(app, ["feedback", "report", "--json"])
        assert r.exit_code == 0, r.output
        report = json.loads(r.stdout.strip().splitlines()[-1])
        assert [(g["source"], g["lists"], g["clicks"]) for g in report["groups"]] == [("recommend", 1, 1)]
        r = runner.invoke(app, ["feedback", "report", "--since", "2200-01-01", "--json"])
        assert json.loads(r.stdout.strip().splitlines()[-1])["groups"] == []
        table = runner.invoke(app, ["feedback", "report"])
        assert table.exit_code == 0 and "recommend" in table.stdout and "total" in table.stdout
    finally:
        get_settings.cache_clear()


def test_a_later_page_another_process_served_a_moment_ago_is_waited_for(store: Store, settings: Settings,
                                                                       tmp_path: Path) -> None:
    """Page 1 is stored; page 2 was served by another worker whose writer still lingers: asked with page 2's
    cursor (2 + 1 items shown), the feed is read again until page 2 is there, so page 3 cannot repeat it."""
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    first = _served((A, B), paged=True)
    done = ServedLog(store, linger_s=0.01)
    done.record(first)
    done.close()
    late = ServedLog(store, linger_s=0.4)
    late.record(_served((C,), paged=True, feed_id=first.id, offset=2))
    reader = ServedLog(store, linger_s=0.4)
    assert reader.feed_items(first.id, 3) == ("c1", [A, B, C])
    late.close()
