"""Store.read: a request's short read awaited on the event loop (PostgreSQL: psycopg asyncio; SQLite: the loop's
own connection, falling back to a worker thread when a lock is held), with the same outage errors as a session."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.engine import make_url

from recsys.errors import StoreUnavailable
from recsys.store import Store
from recsys.store.items import set_flags
from recsys.store.queries import request_state
from recsys.store.tables import Item
from tests.api.servers import TcpProxy
from tests.conftest import PG_URL, _pg_database


def _count(c: Connection) -> int:
    return int(c.execute(select(func.count()).select_from(Item)).scalar_one())


def _add_items(store: Store, ids: list[str]) -> None:
    with store.session() as s:
        s.add_all(Item(external_id=i, content_hash="h") for i in ids)


def test_read_sees_each_commit_and_runs_on_the_loop_where_it_can(store: Store) -> None:
    async def main() -> tuple[list[int], list[bool]]:
        counts, loop_thread = [], []
        for batch in (["a", "b"], ["c"]):
            _add_items(store, batch)  # committed by another connection between the reads

            def read(c: Connection) -> int:
                loop_thread.append(threading.current_thread() is threading.main_thread())
                return _count(c)

            counts.append(await store.read(read))
        return counts, loop_thread

    counts, loop_thread = asyncio.run(main())
    assert counts == [2, 3]  # no stale snapshot kept between requests
    assert loop_thread == [True, True]  # SQLite on the loop; PostgreSQL inside the loop's greenlet, same thread


def test_read_gives_the_request_state(store: Store) -> None:
    _add_items(store, ["x1", "x2", "x3"])
    with store.session() as s:
        set_flags(s, ["x2"], hidden=True)
    events, removed = asyncio.run(store.read(lambda c: request_state(c, "nobody")))
    assert events == [] and removed == {"x2"}


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
        n = await sqlite_store.read(_count)
        done.set()
        await task
        return n, ticks

    n, ticks = asyncio.run(main())
    assert n == 2 and ticks >= 20


async def _through_an_outage(store: Store, proxy: TcpProxy) -> None:
    assert await store.read(_count) == 1
    assert store._async_engines.get(asyncio.get_running_loop()) is not None  # the asyncio driver, not a thread
    proxy.cut()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await store.read(_count)
    proxy.restore()
    for _ in range(50):  # pooled connections died with the server: pre-ping replaces them
        try:
            assert await store.read(_count) == 1
            break
        except StoreUnavailable:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("reads did not recover after the database came back")
    await store.aclose()


@pytest.mark.postgres
def test_postgres_reads_use_the_asyncio_driver_and_survive_an_outage(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for real_url in _pg_database():
        Store(real_url).upgrade()
        u = make_url(real_url)
        proxy = TcpProxy((u.host or "127.0.0.1", u.port or 5432))
        store = Store(u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
        try:
            _add_items(store, ["a"])
            asyncio.run(_through_an_outage(store, proxy))
        finally:
            store.dispose()
            proxy.close()
