"""The served-list writer through a database outage (retried with backoff, what is finally given up counted, one
warning per outage), the feed read awaited on the event loop, and the impression window measured from when an
item was shown (SQLite, and PostgreSQL when RECSYS_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from recsys.config import Settings
from recsys.errors import StoreUnavailable
from recsys.feedback import Served, ServedLog, new_recommendation_id
from recsys.feedback import served as served_module
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.tables import ServedList, utcnow
from tests.conftest import run_async
from tests.store.fixtures import write_hm

A, B, C = "0108775015", "0108775044", "0110065001"


class FlakyStore:
    """A store whose first ``fail`` write sessions raise ``error``: a database that drops, then answers again."""

    def __init__(self, store: Store, fail: int, error: Exception | None = None) -> None:
        self.inner, self.fail, self.sessions = store, fail, 0
        self.error = error or StoreUnavailable("database postgresql://db/x is unreachable (connection refused)")

    @contextmanager
    def session(self) -> Iterator[Any]:
        self.sessions += 1
        if self.sessions <= self.fail:
            raise self.error
        with self.inner.session() as s:
            yield s


def _served(*items: str, **kw: Any) -> Served:
    return Served(new_recommendation_id(), "recommend", items, "c1", **kw)


def _rows(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(ServedList)) or 0)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == served_module.__name__]


def test_a_short_outage_loses_no_list(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    flaky, drops = FlakyStore(store, fail=3), []
    log = ServedLog(flaky, batch_size=1, linger_s=0.0, backoff_s=0.0, on_drop=lambda: drops.append(1))
    caplog.set_level(logging.INFO, served_module.__name__)
    assert all(log.record(_served(A, B)) for _ in range(4))
    assert log.flush(timeout_s=30)
    assert (log.written, log.failed, drops, _rows(store)) == (4, 0, [], 4)
    said = _warnings(caplog)
    assert len(said) == 2 and "retrying" in said[0] and "again" in said[1] and "0 lists given up" in said[1]
    log.close()


def test_lists_given_up_after_the_last_try_are_counted_once_per_outage(store: Store,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    flaky, drops = FlakyStore(store, fail=10**6), []
    log = ServedLog(flaky, batch_size=1, linger_s=0.0, retries=2, backoff_s=0.0, on_drop=lambda: drops.append(1))
    caplog.set_level(logging.INFO, served_module.__name__)
    for _ in range(3):
        assert log.record(_served(A))
    assert log.flush(timeout_s=30)
    assert (log.failed, len(drops), flaky.sessions) == (3, 3, 9)  # three tries each, then given up and counted
    assert len(_warnings(caplog)) == 1  # one warning for the whole outage, not one per batch or try
    flaky.fail = 0
    log.record(_served(B))
    assert log.flush(timeout_s=30) and log.written == 1 and _rows(store) == 1
    assert "3 lists given up" in _warnings(caplog)[-1]
    log.close()


def test_rows_the_database_refuses_are_not_retried(sqlite_store: Store) -> None:
    refused = FlakyStore(sqlite_store, fail=1, error=IntegrityError("INSERT", {}, Exception("duplicate key")))
    log = ServedLog(refused, backoff_s=0.0)
    log.record(_served(A))
    assert log.flush(timeout_s=30)
    assert (log.failed, refused.sessions) == (1, 1)
    log.close()


def test_a_feed_not_written_yet_is_awaited_without_a_thread_sleeping(store: Store, settings: Settings,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    reader = ServedLog(store, linger_s=0.0)
    reads, waits, real_read, real_sleep = [], [], reader._feed_now, asyncio.sleep

    def read(feed_id: str, before: int = 0) -> Any:
        reads.append(feed_id)
        return real_read(feed_id, before)

    async def wait(s: float) -> None:
        waits.append(s)
        await real_sleep(s)

    def no_thread_sleep(s: float) -> None:
        raise AssertionError("a worker thread slept while a feed was looked for")

    monkeypatch.setattr(reader, "_feed_now", read)
    monkeypatch.setattr(served_module.asyncio, "sleep", wait)
    monkeypatch.setattr(served_module.time, "sleep", no_thread_sleep)
    assert run_async(reader.afeed_items(new_recommendation_id(), 1)) is None  # unknown: looked for, bounded
    assert len(reads) == len(waits) + 1  # every wait between two reads was awaited on the loop
    first = _served(A, B, paged=True)
    writer = ServedLog(store, linger_s=0.0)
    writer.record(first)
    writer.flush(timeout_s=30)
    assert run_async(reader.afeed_items(first.id, 2)) == ("c1", [A, B])
    writer.close()


def test_a_future_dated_impression_counts_from_when_it_was_stored(store: Store, settings: Settings,
                                                                   tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    ahead = (utcnow() + timedelta(hours=20)).isoformat()  # a client clock most of a day fast
    ingest_events(store, [{"user_id": "c2", "item_id": C, "type": "impression", "timestamp": ahead}])
    log = ServedLog(store)
    assert C in log.shown_to("c2", 1.0)  # shown just now
    assert C not in log.shown_to("c2", 1.0, now=utcnow() + timedelta(hours=2))  # and out of the window an hour on
    log.close()
