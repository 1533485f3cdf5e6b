"""Reads a request handler awaits on the event loop, made on the database driver itself.

A cached recommendation needs one short read (the user's event ids and the removed-items version). Through
SQLAlchemy and a worker thread that read cost more than everything else the request does (measured on SQLite: ~45 us
of SQLAlchemy around an 8 us query, plus a ~0.2 ms thread handoff). Here a prebuilt statement is compiled once per
dialect and run:

- on SQLite, on the loop thread's own ``sqlite3`` connection: a library call on a local file, and in WAL mode a
  reader never waits for a writer. Its busy timeout is 0; should a lock be held anyway, the read is retried through
  SQLAlchemy in a worker thread, which may wait;
- on PostgreSQL, on psycopg's asyncio connections (autocommit: one round trip), pooled per event loop; a slow or
  dead server blocks nothing else on the loop;
- elsewhere, through SQLAlchemy in a worker thread.

Only for statements whose binds and columns need no SQLAlchemy type processing (integers, strings, NULL).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable

if TYPE_CHECKING:
    import psycopg

    from recsys.store.db import Store

Row = tuple[Any, ...]


class LoopReads:
    """The event-loop read path of one :class:`~recsys.store.db.Store` (``Store.fetch``)."""

    def __init__(self, store: Store, *, max_connections: int = 16, timeout_s: float = 5.0) -> None:
        self.store = store
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self._compiled: dict[int, tuple[Executable, str, tuple[str, ...] | None, dict[str, Any]]] = {}
        self._sqlite = threading.local()
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PgPool] = weakref.WeakKeyDictionary()
        url = store.engine.url
        self.sqlite_path = url.database if url.get_backend_name() == "sqlite" and url.database not in (
            None, "", ":memory:") else None
        self.pg_conninfo = _pg_conninfo(store) if url.get_backend_name() == "postgresql" else None

    async def fetch(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        if self.sqlite_path is not None:
            try:
                return self._sqlite_rows(statement, params)
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise self.store.unavailable(e) from e
        elif self.pg_conninfo is not None:
            return await self._pool().rows(*self._sql(statement, params, positional=False))
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._sync_rows, statement, params)

    async def aclose(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.shut()

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
            compiled = statement.compile(dialect=self.store.engine.dialect)  # type: ignore[attr-defined]
            names = tuple(compiled.positiontup) if compiled.positiontup else None
            defaults = {k: b.value for k, b in compiled.binds.items() if not b.required}
            hit = (statement, str(compiled), names, defaults)
            self._compiled[id(statement)] = hit
        _, sql, names, defaults = hit
        values = {**defaults, **params}
        return sql, tuple(values[n] for n in names or ()) if positional else values

    def _sqlite_rows(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        conn = getattr(self._sqlite, "conn", None)
        if conn is None:  # one per thread: the loop's (a server has one loop thread)
            assert self.sqlite_path is not None
            conn = sqlite3.connect(self.sqlite_path, timeout=0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            self._sqlite.conn = conn
        sql, args = self._sql(statement, params, positional=True)
        return conn.execute(sql, args).fetchall()  # autocommit: each read sees every commit before it

    def _sync_rows(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        with self.store.reading() as c:
            return [tuple(r) for r in c.execute(statement, dict(params))]

    def _pool(self) -> _PgPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            assert self.pg_conninfo is not None
            pool = self._pools[loop] = _PgPool(self.pg_conninfo, self.max_connections, self.store, self.timeout_s)
        return pool


class _PgPool:
    """psycopg asyncio connections of one event loop: at most ``size`` at once, idle ones kept. A connection that
    fails is dropped and the read tried once more on a new one (pooled connections die with a restarted server);
    a refused connection fails at once, so an outage answers 503 without waiting, and a read that gets no answer
    within ``timeout_s`` (a hung server or network, or every connection busy) gives up with the same error."""

    def __init__(self, conninfo: str, size: int, store: Store, timeout_s: float) -> None:
        self.conninfo = conninfo
        self.store = store
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(size)
        self._idle: deque[psycopg.AsyncConnection[Any]] = deque()
        self._abandoned: set[asyncio.Future[list[Row]]] = set()  # timed-out reads still winding down
        self._closed = False

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
        raise self.store.unavailable(TimeoutError(f"no answer in {self.timeout_s:g} s"))

    async def _rows(self, sql: str, params: Mapping[str, Any]) -> list[Row]:
        import psycopg

        async with self._slots:
            for attempt in (1, 2):
                pooled = attempt == 1 and bool(self._idle)
                conn = self._idle.pop() if pooled else None
                try:
                    if conn is None:
                        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                    cur = await conn.execute(sql, params)  # type: ignore[arg-type]
                    out = await cur.fetchall()
                except psycopg.OperationalError as e:
                    if conn is not None:
                        await conn.close()
                    if not pooled:
                        raise self.store.unavailable(e) from e
                    await self.close()  # the others died with it (a restarted server): retry on a new one
                    continue
                except BaseException:  # cancelled (the timeout) mid-read: the connection's state is unknown
                    if conn is not None:
                        await asyncio.shield(conn.close())
                    raise
                if self._closed:  # the app shut down while this read ran
                    await conn.close()
                else:
                    self._idle.append(conn)
                return out
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the idle connections (reads still running close theirs when done, once the pool is shut)."""
        while self._idle:
            await self._idle.pop().close()

    async def shut(self) -> None:
        self._closed = True
        await self.close()


def _forget(pending: set[asyncio.Future[list[Row]]]) -> Any:
    def done(read: asyncio.Future[list[Row]]) -> None:
        pending.discard(read)
        if not read.cancelled():
            read.exception()  # retrieved: an error while winding down is of no interest to anyone

    return done


def _pg_conninfo(store: Store) -> str | None:
    """A libpq URI for the store's PostgreSQL URL, or None where psycopg (version 3) is not installed."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        return None
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
