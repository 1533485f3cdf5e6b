"""Request-bounded database calls on PostgreSQL against a locked table, and against a statement the server does not
bound itself (recsys.store.deadline): each gives up at the bound as StoreTimeout (503 ``store_busy``) and leaves no
backend waiting on the server. Before, the watchdog only shut the client's socket: every timed-out request left a
backend waiting on the lock until it was released, and they piled up to "too many clients"."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from recsys.errors import StoreTimeout
from recsys.store import Store
from recsys.store.deadline import REPEATS, bounded
from recsys.store.tables import Event, Item
from tests.conftest import PG_URL, _pg_database, run_async

pytestmark = pytest.mark.postgres

BOUND = 0.5
"""The request bound of these tests (``store.request_read_timeout_s``)."""


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg() -> Iterator[tuple[Store, psycopg.Connection]]:
    """A store on a throwaway database (read timeout BOUND) and a watching connection (autocommit) on it."""
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for url in _pg_database():
        store = Store(url, read_timeout_s=BOUND)
        store.upgrade()
        try:
            with psycopg.connect(libpq(url), autocommit=True) as watch:
                yield store, watch
        finally:
            store.dispose()


@contextlib.contextmanager
def locked(store: Store, table: str) -> Iterator[None]:
    """``table`` locked by another connection (what a migration, VACUUM FULL or a long transaction holds)."""
    with psycopg.connect(libpq(store.url)) as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            holder.rollback()


def lock_waiters(watch: psycopg.Connection, settle_s: float = 3.0) -> int:
    """Backends of the watched database waiting on a lock, once they stopped (the cancels are asynchronous)."""
    end = time.monotonic() + settle_s
    while True:
        row = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchone()
        n = int(row[0]) if row else 0
        if n == 0 or time.monotonic() > end:
            return n
        time.sleep(0.1)


def count_events(store: Store) -> tuple[Exception | None, float]:
    """One request's read of ``events``: the error it ended with, and how long it took."""
    t0 = time.monotonic()
    try:
        with bounded(BOUND), store.session() as s:
            s.scalar(select(func.count(Event.id)))
    except Exception as e:
        return e, time.monotonic() - t0
    return None, time.monotonic() - t0


def test_timed_out_calls_on_a_locked_table_leave_no_backend_waiting(pg: tuple[Store, psycopg.Connection]) -> None:
    store, watch = pg
    with locked(store, "events"):
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: count_events(store), range(9)))
        assert lock_waiters(watch) == 0  # while the lock is still held: nothing of those requests waits on it
        for error, took in answers:
            assert isinstance(error, StoreTimeout), error
            assert error.code == "store_busy" and f"no answer in {BOUND:g} s" in error.message, error.message
            assert "lock timeout" in error.message and "start it" not in error.message, error.message
            assert took < BOUND + 1.0, took
    error, _ = count_events(store)
    assert error is None  # the pooled connections were kept and work


def test_a_statement_the_server_does_not_bound_is_cancelled_not_cut(pg: tuple[Store, psycopg.Connection],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The watchdog asks the server to cancel the statement: the backend stops and the connection stays usable.
    It logs the bound it acted on (the log said "within 0 s": the bound was read in the watchdog's thread)."""
    store, watch = pg
    REPEATS.clear()
    pid = None
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="recsys.store.deadline"), pytest.raises(StoreTimeout) as raised, \
            bounded(BOUND), store.session() as s:
        s.execute(text("SET LOCAL statement_timeout = 0"))  # e.g. a role's own setting: only the watchdog acts
        s.execute(text("SET LOCAL lock_timeout = 0"))
        pid = s.scalar(text("SELECT pg_backend_pid()"))
        s.execute(text("SELECT pg_sleep(30)"))
    assert time.monotonic() - t0 < BOUND + 1.0
    assert "canceling statement due to user request" in raised.value.message, raised.value.message
    row = watch.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    assert row == ("idle",), row  # not still sleeping, not dropped: back in the pool
    assert f"no answer within {BOUND:g} s; asked it to cancel the statement" in caplog.text, caplog.text


def test_bounded_connections_carry_server_timeouts_unbounded_ones_the_servers_own(
        pg: tuple[Store, psycopg.Connection]) -> None:
    store, watch = pg
    defaults = [watch.execute(f"SHOW {name}").fetchone() for name in ("lock_timeout", "statement_timeout")]
    with bounded(2.0), store.session() as s:
        pid = s.scalar(text("SELECT pg_backend_pid()"))
        assert [s.execute(text(f"SHOW {n}")).one() for n in ("lock_timeout", "statement_timeout")] == [
            ("1800ms",), ("1900ms",)]
    for _ in range(40):  # the pool hands its connections out in turn: until the one used above comes back
        with store.session() as s:
            if s.scalar(text("SELECT pg_backend_pid()")) == pid:
                assert [tuple(s.execute(text(f"SHOW {n}")).one()) for n in ("lock_timeout", "statement_timeout")
                        ] == defaults  # an import or a build on the same pool waits as long as the server lets it
                return
    raise AssertionError("the bounded session's connection never came back from the pool")


def test_loop_reads_on_a_locked_table_end_on_the_server(pg: tuple[Store, psycopg.Connection]) -> None:
    store, watch = pg

    async def read() -> tuple[StoreTimeout, dict[str, int]]:
        try:
            with pytest.raises(StoreTimeout) as raised:
                await store.fetch(select(func.count(Item.id)), {})
            return raised.value, store.pool_stats()
        finally:
            await store.aclose()

    with locked(store, "items"):
        error, stats = run_async(read())
        assert lock_waiters(watch) == 0
    assert error.code == "store_busy" and "lock timeout" in error.message, error.message
    assert stats["connections_lost"] == 0 and stats["returns_bad"] == 0, stats  # the connection went back to the pool
