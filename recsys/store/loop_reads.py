"""Reads a request handler awaits on the event loop, made on the database driver itself.

A cached recommendation needs one short read (the user's event ids and the removed-items version). Through
SQLAlchemy and a worker thread that read cost more than everything else the request does (measured on SQLite: ~45 us
of SQLAlchemy around an 8 us query, plus a ~0.2 ms thread handoff). Here a prebuilt statement is compiled once per
dialect and run:

- on SQLite, on the loop thread's own ``sqlite3`` connection: a library call on a local file, and in WAL mode a
  reader never waits for a writer. Its busy timeout is 0; should a lock be held anyway, the read is retried through
  SQLAlchemy in a worker thread, which may wait;
- on PostgreSQL, on psycopg's asyncio connections (autocommit: one round trip) from a ``psycopg_pool``
  :class:`~psycopg_pool.AsyncConnectionPool` per event loop (:class:`LoopPool`); a slow or dead server blocks
  nothing else on the loop;
- elsewhere, through SQLAlchemy in a worker thread.

Only for statements whose binds and columns need no SQLAlchemy type processing (integers, strings, NULL).

This module knows its store only as a :class:`Source` (an engine, a sync read and an outage error): the store
(:mod:`recsys.store.db`) depends on it, never the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import sqlite3
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine, Executable

from recsys.store.deadline import SET_TIMEOUTS, TIMEOUT_STATES, DeadlineExceeded, OncePerMinute, server_timeouts
from recsys.store.sqlite import read_only_uri

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

Row = tuple[Any, ...]

POOL_STATS = ("pool_size", "pool_available", "requests_waiting", "connections_errors", "requests_errors",
              "connections_lost", "returns_bad", "connections_num")
"""The ``psycopg_pool`` statistics :meth:`LoopReads.pool_stats` sums over the loops' pools: gauges (connections
open, idle, clients waiting) and counters since each pool opened."""
DRIVER_REPEATS = OncePerMinute()
"""psycopg's and psycopg_pool's own warnings, once a minute per message: while the server is down the pool warns of
every failed connect (tens a second under load)."""


class Source(Protocol):
    """What the reads need of a store (:class:`recsys.store.db.Store` is one)."""

    @property
    def engine(self) -> Engine: ...

    def reading(self) -> AbstractContextManager[Connection]: ...

    def unavailable(self, e: Exception) -> Exception: ...


class LoopReads:
    """The event-loop read path of one store (``Store.fetch``)."""

    def __init__(self, source: Source, *, max_connections: int = 16, timeout_s: float = 5.0,
                 max_lifetime_s: float = 3600.0, max_idle_s: float = 600.0) -> None:
        self.source = source
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self.max_lifetime_s = max_lifetime_s
        self.max_idle_s = max_idle_s
        self._compiled: dict[int, tuple[Executable, str, tuple[str, ...] | None, dict[str, Any]]] = {}
        self._sqlite = threading.local()
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPool] = weakref.WeakKeyDictionary()
        url = source.engine.url
        self.sqlite_path = url.database if url.get_backend_name() == "sqlite" and url.database not in (
            None, "", ":memory:") else None
        self.pg_conninfo = _pg_conninfo(source.engine) if url.get_backend_name() == "postgresql" else None

    async def fetch(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        if self.sqlite_path is not None:
            rows = self._sqlite_unless_locked(statement, params)
            if rows is not None:
                return rows
        elif self.pg_conninfo is not None:
            return await (await self._pool()).rows(*self._sql(statement, params, positional=False))
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._sync_rows, statement, params)

    def rows_now(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        """:meth:`fetch` for a worker thread: on SQLite the driver on this thread's own connection, elsewhere (and
        when SQLite is locked) through SQLAlchemy."""
        rows = self._sqlite_unless_locked(statement, params) if self.sqlite_path is not None else None
        return rows if rows is not None else self._sync_rows(statement, params)

    def pool_stats(self) -> dict[str, int]:
        """:data:`POOL_STATS` summed over the pools of every event loop (all zero on SQLite)."""
        total: Counter[str] = Counter(dict.fromkeys(POOL_STATS, 0))
        for pool in list(self._pools.values()):
            stats = pool.pool.get_stats()
            total.update({k: stats.get(k, 0) for k in POOL_STATS})
        return dict(total)

    async def aclose(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    def close(self) -> None:
        conn = getattr(self._sqlite, "conn", None)
        if conn is not None:
            conn.close()
            self._sqlite.conn = None

    # -- internals ----------------------------------------------------------------------------------------------
    def _sql(self, statement: Executable, params: Mapping[str, Any], *, positional: bool) -> tuple[str, Any]:
        """The statement's SQL for this dialect (compiled once) and its parameters in the driver's form."""
        hit = self._compiled.get(id(statement))
        if hit is None or hit[0] is not statement:
            compiled = statement.compile(dialect=self.source.engine.dialect)  # type: ignore[attr-defined]
            names = tuple(compiled.positiontup) if compiled.positiontup else None
            defaults = {k: b.value for k, b in compiled.binds.items() if not b.required}
            hit = (statement, str(compiled), names, defaults)
            self._compiled[id(statement)] = hit
        _, sql, names, defaults = hit
        values = {**defaults, **params}
        return sql, tuple(values[n] for n in names or ()) if positional else values

    def _sqlite_unless_locked(self, statement: Executable, params: Mapping[str, Any]) -> list[Row] | None:
        """The rows on this thread's own SQLite connection; None while a lock is held (the caller retries through
        SQLAlchemy, which may wait)."""
        try:
            return self._sqlite_rows(statement, params)
        except sqlite3.DatabaseError as e:  # unreachable, damaged, read-only: as the store says it
            if "locked" not in str(e) and "busy" not in str(e):
                raise self.source.unavailable(e) from e
            return None

    def _sqlite_rows(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        conn = getattr(self._sqlite, "conn", None)
        if conn is None:  # one per thread: the loop's (a server has one loop thread) and each ranking thread's
            assert self.sqlite_path is not None
            uri = read_only_uri(self.sqlite_path)  # a read-only mount's file: read as the store's engine reads it
            conn = sqlite3.connect(uri or self.sqlite_path, uri=uri is not None, timeout=0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            self._sqlite.conn = conn
        sql, args = self._sql(statement, params, positional=True)
        return conn.execute(sql, args).fetchall()  # autocommit: each read sees every commit before it

    def _sync_rows(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        with self.source.reading() as c:
            return [tuple(r) for r in c.execute(statement, dict(params))]

    async def _pool(self) -> LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            assert self.pg_conninfo is not None
            pool = self._pools[loop] = LoopPool(
                self.pg_conninfo, size=self.max_connections, timeout_s=self.timeout_s,
                max_lifetime_s=self.max_lifetime_s, max_idle_s=self.max_idle_s, unavailable=self.source.unavailable)
        await pool.open()  # a no-op once open; here because a pool opens on its loop
        return pool


class LoopPool:
    """A ``psycopg_pool`` pool of one event loop: up to ``size`` autocommit connections, one kept open when idle,
    others closed after ``max_idle_s`` unused, each replaced after ``max_lifetime_s``; no check on check-out (a
    read is one round trip).

    - A read on a pooled connection that fails (the server restarted: every pooled connection died with it) drains
      the pool and is tried once more on a new connection.
    - A connection that cannot be made fails the reads waiting for it at once (``reconnect_timeout=0``: the pool
      gives up on the second refused attempt and calls :meth:`_connect_failed`), so an outage answers 503 without
      waiting; the next read tries again, so reads recover as soon as the server is back.
    - A read that gets no answer within ``timeout_s`` (a hung server or network, or every connection busy) gives up
      with the same error; the read is cancelled behind the request and its connection closed and replaced. The
      server bounds its own waits too (``lock_timeout`` / ``statement_timeout`` just under ``timeout_s``, set on each
      new connection): a read waiting on a locked table ends there, and its connection stays in the pool.
    - The pool's tasks start in a context of their own, not in the request that happens to open the pool: their
      log records (connect failures, once a minute each) carry no request's id.
    """

    def __init__(self, conninfo: str, *, size: int, timeout_s: float, max_lifetime_s: float, max_idle_s: float,
                 unavailable: Callable[[Exception], Exception]) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.timeout_s = timeout_s
        self.unavailable = unavailable
        for name in ("psycopg", "psycopg.pool"):
            logging.getLogger(name).addFilter(DRIVER_REPEATS)  # a no-op when there already
        self._opening: asyncio.Task[None] | None = None
        self._failed = asyncio.Event()  # set (and replaced) each time the pool gives up making a connection
        self._abandoned: set[asyncio.Future[list[Row]]] = set()  # timed-out reads still winding down
        self._guard: asyncio.Task[None] | None = None
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo, open=False, name="recsys-loop-reads", min_size=1, max_size=size,
            kwargs={"autocommit": True, "connect_timeout": max(2, math.ceil(timeout_s))}, configure=self._configure,
            timeout=timeout_s + 1,  # the read's own bound answers first
            max_lifetime=max_lifetime_s, max_idle=max_idle_s,
            reconnect_timeout=0, reconnect_failed=self._connect_failed)

    async def open(self) -> None:
        """Open the pool, once (a no-op after; tried again after a failure), in a new context: the pool's workers
        would otherwise inherit the opening request's context variables (its request id) for as long as they run."""
        task = self._opening
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._opening = asyncio.get_running_loop().create_task(self._open(), context=contextvars.Context())
        if not task.done():
            await asyncio.shield(task)  # a request cancelled meanwhile leaves the opening to finish
        task.result()

    async def _open(self) -> None:
        if self._guard is None:
            self._guard = asyncio.get_running_loop().create_task(self._close_with_the_loop())
        await self.pool.open()

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(SET_TIMEOUTS, server_timeouts(self.timeout_s))

    async def _close_with_the_loop(self) -> None:
        """Close the pool when its event loop shuts down with the pool still open (``asyncio.run`` ending without
        ``Store.aclose()``): a psycopg_pool worker cancelled in the middle of a task carries on, and the loop's
        shutdown would wait for it for ever; closing stops it."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self.pool.close(timeout=1.0)
            raise

    async def rows(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        read = asyncio.ensure_future(self._rows(sql, params))
        done, _ = await asyncio.wait({read}, timeout=self.timeout_s)
        if read in done:
            return read.result()
        # Answer now; the read is cancelled behind the request (psycopg first asks the server to cancel the query,
        # up to 10 s, then closes the connection).
        read.cancel()
        self._abandoned.add(read)
        read.add_done_callback(_forget(self._abandoned))
        raise self.unavailable(DeadlineExceeded(self.timeout_s))

    async def _rows(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        import psycopg

        for attempt in (1, 2):
            conn = await self._getconn()
            try:
                cur = await conn.execute(sql, params)  # type: ignore[arg-type]
                out = await cur.fetchall()
            except psycopg.OperationalError as e:
                await self.pool.putconn(conn)  # closed (a lost server): the pool makes another; else it is kept
                if e.sqlstate in TIMEOUT_STATES:  # the server's own bound ended the wait: it answers, retry nothing
                    raise self.unavailable(DeadlineExceeded(self.timeout_s, str(e).splitlines()[0])) from e
                if attempt == 2:
                    raise self.unavailable(e) from e
                await self.pool.drain()  # the others died with it (a restarted server): retry on a new one
                continue
            except BaseException:  # cancelled (the timeout) mid-read: the connection's state is unknown
                await asyncio.shield(self._discard(conn))
                raise
            await self.pool.putconn(conn)
            return out
        raise AssertionError("unreachable")

    async def _getconn(self) -> psycopg.AsyncConnection[Any]:
        """A pooled connection, or StoreUnavailable as soon as the pool fails to make one."""
        from psycopg_pool import PoolClosed, PoolTimeout

        failed = asyncio.ensure_future(self._failed.wait())
        get = asyncio.ensure_future(self.pool.getconn())
        try:
            await asyncio.wait({get, failed}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled (the timeout) while waiting: a connection got meanwhile goes back
            self._give_up(get)
            if get.done() and not get.cancelled() and get.exception() is None:
                await asyncio.shield(self.pool.putconn(get.result()))
            raise
        finally:
            failed.cancel()
        if not get.done():
            self._give_up(get)  # the pool hands a connection that arrives later to the next reader
            await asyncio.wait({get})  # at once: its waiter notes the cancellation, and leaves the queue
            self._drop_given_up()
            raise self.unavailable(ConnectionError("no connection could be made"))
        try:
            return get.result()
        except (PoolTimeout, PoolClosed) as e:
            self._drop_given_up()
            raise self.unavailable(e) from e

    def _give_up(self, get: asyncio.Future[Any]) -> None:
        get.cancel()
        get.add_done_callback(lambda _: self._drop_given_up())  # once the cancellation has reached its waiter

    def _drop_given_up(self) -> None:
        """Take the reads that gave up (cancelled or timed out) out of the pool's queue of waiting clients.
        psycopg_pool (3.3) leaves them there until a connection is returned: through an outage none is, so the queue
        would grow by one per read and ``requests_waiting`` (``recsys_db_pool_waiting``) count reads long answered.
        A waiter that gave up has its ``error`` set; the pool skips those anyway. Runs on the pool's loop without
        awaiting, so no pool task sees the queue half-changed."""
        waiting = getattr(self.pool, "_waiting", None)
        if waiting is None:  # another psycopg_pool: nothing to tidy
            return
        gone = [w for w in waiting if getattr(w, "error", None) is not None]
        for w in gone:
            waiting.remove(w)

    async def _discard(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.close()
        await self.pool.putconn(conn)  # closed: counted out of the pool, which makes another when needed

    async def _connect_failed(self, _pool: Any) -> None:
        self._failed.set()
        self._failed = asyncio.Event()

    async def close(self) -> None:
        """Close the pool: idle connections now, those in use when their reads end."""
        if self._guard is not None:
            self._guard.cancel()
        await self.pool.close(timeout=1.0)


def _forget(pending: set[asyncio.Future[list[Row]]]) -> Any:
    def done(read: asyncio.Future[list[Row]]) -> None:
        pending.discard(read)
        if not read.cancelled():
            read.exception()  # retrieved: an error while winding down is of no interest to anyone

    return done


def _pg_conninfo(engine: Engine) -> str | None:
    """A libpq URI for the engine's PostgreSQL URL, or None where psycopg (version 3) is not installed."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("psycopg_pool") is None:
        return None
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
