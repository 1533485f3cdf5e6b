"""Store.fetch: a request's short read awaited on the event loop on the driver itself (PostgreSQL: psycopg asyncio;
SQLite: the loop's own connection, falling back to a worker thread when a lock is held), with the same outage errors
as a session."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from recsys.config import Settings
from recsys.errors import StoreUnavailable
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.items import set_flags
from recsys.store.loop_reads import LoopReads
from recsys.store.queries import (
    REMOVED_STATE,
    REQUEST_STATE,
    USER_EVENTS,
    removed_state,
    removed_state_of,
    request_state,
    request_state_of,
    user_event_records,
    user_event_records_of,
)
from recsys.store.tables import Item
from tests.api.servers import TcpProxy
from tests.conftest import PG_URL, _pg_database, run_async
from tests.store.fixtures import write_hm

COUNT = select(func.count()).select_from(Item)


async def _count(store: Store) -> int:
    return int((await store.fetch(COUNT, {}))[0][0])


def _add_items(store: Store, ids: list[str]) -> None:
    with store.session() as s:
        s.add_all(Item(external_id=i, content_hash="h") for i in ids)


def test_fetch_sees_each_commit_on_the_loop(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread(*_: Any) -> None:
        raise AssertionError("SQLite and PostgreSQL reads stay on the event loop")

    monkeypatch.setattr(LoopReads, "_sync_rows", no_thread)

    async def main() -> list[int]:
        counts = []
        for batch in (["a", "b"], ["c"]):
            _add_items(store, batch)  # committed by another connection between the reads
            counts.append(await _count(store))
        return counts

    assert run_async(main()) == [2, 3]  # no stale snapshot kept between requests


def test_fetch_gives_the_request_state_as_the_session_does(store: Store) -> None:
    _add_items(store, ["x1", "x2", "x3"])
    with store.session() as s:
        set_flags(s, ["x2"], hidden=True)
    rows = run_async(store.fetch(REQUEST_STATE, {"user_id": "nobody"}))
    removed = run_async(store.fetch(REMOVED_STATE, {}))
    with store.reading() as c:
        assert request_state_of(rows) == request_state(c, "nobody")
        assert removed_state_of(removed) == removed_state(c)
        assert removed_state(c)[0] == {"x2"}


def test_fetched_history_equals_the_session_read(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    ingest_events(store, [{"user_id": "u-h", "item_id": "0108775015", "type": "rating", "value": 4.5,
                           "timestamp": "2024-05-01T10:00:00.250000Z", "event_id": "h1"},
                          {"user_id": "u-h", "item_id": "0108775044", "type": "view",
                           "timestamp": "2024-05-02T08:30:00", "event_id": "h2"}])
    fetched = user_event_records_of(run_async(store.fetch(USER_EVENTS, {"user_id": "u-h"})))
    with store.reading() as c:
        assert fetched == user_event_records(c, "u-h") and len(fetched) == 2
    assert fetched[0][3] == datetime(2024, 5, 1, 10, 0, 0, 250000)  # a datetime on both drivers, naive UTC


def test_a_locked_sqlite_file_is_read_from_a_thread_while_the_loop_runs_on(sqlite_store: Store) -> None:
    _add_items(sqlite_store, ["a"])
    path = make_url(sqlite_store.url).database
    assert path
    sqlite_store.engine.dispose()  # an exclusive WAL lock needs the file closed elsewhere
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO items (external_id, title, description, in_stock, attributes, hidden, deleted, "
                   "content_hash, created_at, updated_at) VALUES ('b', '', '', 1, '{}', 0, 0, 'h', "
                   "'2026-01-01', '2026-01-01')")  # a writer holding the file's lock, as a crashed tool might

    async def main() -> tuple[int, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                if ticks == 20:  # the loop kept running while the read waited: let the writer finish
                    holder.execute("COMMIT")
                    holder.close()
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        n = await _count(sqlite_store)
        done.set()
        await task
        return n, ticks

    n, ticks = run_async(main())
    assert n == 2 and ticks >= 20


async def _through_an_outage(store: Store, proxy: TcpProxy) -> None:
    assert await asyncio.gather(*(_count(store) for _ in range(4))) == [1] * 4  # several pooled connections
    proxy.cut()
    proxy.restore()  # a server restart: every pooled connection is dead, the server is back
    assert await _count(store) == 1  # the dead ones are dropped together and the read retried on a new one
    proxy.cut()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await _count(store)
    proxy.restore()
    for _ in range(50):  # pooled connections died with the server: new ones replace them
        try:
            assert await _count(store) == 1
            break
        except StoreUnavailable:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("reads did not recover after the database came back")
    proxy.hang()  # no answer and no error: the read gives up after the store's read timeout
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    with pytest.raises(StoreUnavailable, match="no answer in 0.5 s"):
        await _count(store)
    task.cancel()
    assert ticks >= 10  # the loop served others meanwhile
    proxy.resume()
    assert await _count(store) == 1
    await store.aclose()


@pytest.mark.postgres
def test_postgres_reads_survive_an_outage_and_give_up_on_a_hung_server(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for real_url in _pg_database():
        Store(real_url).upgrade()
        u = make_url(real_url)
        proxy = TcpProxy((u.host or "127.0.0.1", u.port or 5432))
        store = Store(u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                      read_timeout_s=0.5)
        try:
            _add_items(store, ["a"])
            run_async(_through_an_outage(store, proxy))
        finally:
            store.dispose()
            proxy.close()


def test_sqlite_has_no_loop_pool(sqlite_store: Store) -> None:
    _add_items(sqlite_store, ["a"])
    assert run_async(_count(sqlite_store)) == 1
    assert set(sqlite_store.pool_stats().values()) == {0}


async def _pool_through_a_lifetime_and_an_outage(store: Store, proxy: TcpProxy) -> list[dict[str, int]]:
    seen = []
    assert await _count(store) == 1
    seen.append(store.pool_stats())
    await asyncio.sleep(0.5)  # past the lifetime: the next read's connection is closed when returned
    for _ in range(3):
        assert await _count(store) == 1
        await asyncio.sleep(0.05)
    seen.append(store.pool_stats())
    proxy.cut()
    with pytest.raises(StoreUnavailable):
        await _count(store)
    seen.append(store.pool_stats())
    await store.aclose()
    return seen


@pytest.mark.postgres
def test_postgres_loop_pool_replaces_old_connections_and_counts_errors() -> None:
    """The loop's connections come from psycopg_pool: one past its lifetime is replaced when returned, and the
    pool's statistics (for /metrics) count connections made and failed."""
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for real_url in _pg_database():
        Store(real_url).upgrade()
        u = make_url(real_url)
        proxy = TcpProxy((u.host or "127.0.0.1", u.port or 5432))
        store = Store(u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                      loop_connection_lifetime_s=0.3)
        try:
            _add_items(store, ["a"])

            first, recycled, down = run_async(_pool_through_a_lifetime_and_an_outage(store, proxy))
            assert first["pool_size"] >= 1 and first["connections_errors"] == 0
            assert recycled["connections_num"] > first["connections_num"]
            assert down["connections_errors"] > 0 and down["pool_available"] == 0
        finally:
            store.dispose()
            proxy.close()


def test_a_loop_may_end_with_its_pool_open(store: Store) -> None:
    """``asyncio.run`` over reads, without ``Store.aclose()``: the loop's shutdown closes the pool (its workers,
    cancelled mid-task, would otherwise keep the loop waiting for ever)."""
    _add_items(store, ["a"])
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(lambda: [run_async(_count(store)) for _ in range(8)]).result(timeout=60) == [1] * 8
