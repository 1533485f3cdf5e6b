"""Bounded waits for the database on a request's path: a hung server, a cut network or a held lock answers 503
within ``store.request_read_timeout_s`` instead of holding the request (and a worker thread) for as long as it lasts.

The API sets the bound for everything a request does (:func:`bounded`: a context variable, so it follows the
request into worker threads); offline jobs (imports, builds, the server's refresh task) run unbounded. Under a bound:

- PostgreSQL: connecting gives up after the bound (libpq's ``connect_timeout``, at least 2 s); every statement,
  commit and the check-out ping is watched by one thread that, past the deadline, shuts the connection's socket.
  The blocked call then fails as a lost connection (SQLAlchemy drops it from the pool) and the store answers
  StoreUnavailable. Shutting the socket works where the server cannot help: it is frozen, or the network holds
  every byte; a server-side ``statement_timeout`` would need an answering server.
- SQLite: the wait is for a lock (another writer, e.g. an import): the connection's busy timeout is the bound, so
  a request gives up with StoreBusy while the lock holder keeps its 30 s.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

log = logging.getLogger(__name__)

_bound: ContextVar[float | None] = ContextVar("recsys_db_bound", default=None)
SQLITE_BUSY_MS = 30_000
"""The busy timeout of unbounded work (imports, builds): they wait for each other."""
_TOKEN = "recsys_deadline"


@contextlib.contextmanager
def bounded(seconds: float | None) -> Iterator[None]:
    """Database calls made inside (in this context and the worker threads it starts) wait at most ``seconds``."""
    token = _bound.set(seconds if seconds and seconds > 0 else None)
    try:
        yield
    finally:
        _bound.reset(token)


class Watchdog:
    """One daemon thread that calls an armed interrupt once its deadline passes, unless disarmed before."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._armed: dict[int, bool] = {}  # token -> fired
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, interrupt: Callable[[], None]) -> int:
        token = next(self._tokens)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, token, interrupt))
            self._armed[token] = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recsys-db-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Stop watching; True when the deadline had passed and the interrupt was called."""
        with self._cond:
            return self._armed.pop(token, False)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][1] not in self._armed:
                        heapq.heappop(self._heap)  # disarmed in time
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                _, token, interrupt = heapq.heappop(self._heap)
                self._armed[token] = True
            try:
                interrupt()
            except Exception as e:  # a connection closed meanwhile: nothing left to interrupt
                log.debug("database interrupt failed: %s", e)


WATCHDOG = Watchdog()


def _shut_socket(dbapi_conn: Any) -> Callable[[], None]:
    def interrupt() -> None:
        fd = dbapi_conn.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as s:  # shutdown acts on the socket the duplicate shares
            s.shutdown(socket.SHUT_RDWR)
        log.warning("the database gave no answer within %.3g s; connection dropped", _bound.get() or 0)

    return interrupt


def install(engine: Engine) -> None:
    """Hook the bound into ``engine``'s connections (PostgreSQL and SQLite; other databases are not bounded)."""
    name = engine.dialect.name
    if name == "postgresql":
        _install_pg(engine)
    elif name == "sqlite":
        event.listen(engine, "before_cursor_execute", _sqlite_busy_timeout)


def _install_pg(engine: Engine) -> None:
    def arm(conn: Any, *_: Any) -> None:
        if conn.invalidated:  # the rollback of a connection that died (a crashed server) sends nothing to watch
            return
        _arm(conn.info, conn.connection.dbapi_connection)

    def disarm(conn: Any, *_: Any) -> None:
        _disarm(conn.info)

    def disarm_on_error(ctx: Any) -> None:
        if ctx.connection is not None and not ctx.connection.closed:
            _disarm(ctx.connection.info)

    def connect_timeout(_dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seconds = _bound.get()
        cparams.setdefault("connect_timeout", max(2, math.ceil(seconds)) if seconds is not None else 30)

    def ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """The pool's pre-ping (a pooled connection may have died with a restarted server), under the bound:
        SQLAlchemy's own pre-ping cannot be watched. A failed one is replaced by a new connection."""
        _arm(record.info, dbapi_conn)
        autocommit = dbapi_conn.autocommit
        try:
            dbapi_conn.autocommit = True  # no transaction left open by the ping
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
            dbapi_conn.autocommit = autocommit
        except Exception as e:
            raise DisconnectionError(f"connection failed its check-out ping: {e}") from e
        finally:
            _disarm(record.info)

    def reset(dbapi_conn: Any, record: Any, *_: Any) -> None:
        _arm(record.info, dbapi_conn)  # the rollback on return to the pool; disarmed at check-in

    event.listen(engine, "before_cursor_execute", arm)
    event.listen(engine, "after_cursor_execute", disarm)
    event.listen(engine, "handle_error", disarm_on_error)
    event.listen(engine, "commit", arm)
    event.listen(engine, "rollback", arm)
    event.listen(engine, "do_connect", connect_timeout)
    event.listen(engine.pool, "checkout", ping)
    event.listen(engine.pool, "reset", reset)
    event.listen(engine.pool, "checkin", lambda _dbapi, record: _disarm(record.info) if record is not None else None)


def _arm(info: dict[str, Any], dbapi_conn: Any) -> None:
    """Watch the connection's next call under the current bound (replacing any watch left on it)."""
    _disarm(info)
    seconds = _bound.get()
    if seconds is not None:
        info[_TOKEN] = WATCHDOG.arm(seconds, _shut_socket(dbapi_conn))


def _disarm(info: dict[str, Any]) -> None:
    token = info.pop(_TOKEN, None)
    if token is not None:
        WATCHDOG.disarm(token)


def _sqlite_busy_timeout(conn: Any, cursor: Any, *_: Any) -> None:
    seconds = _bound.get()
    ms = SQLITE_BUSY_MS if seconds is None else max(1, int(seconds * 1000))
    if conn.info.get("busy_ms", SQLITE_BUSY_MS) != ms:
        cursor.execute(f"PRAGMA busy_timeout={ms}")
        conn.info["busy_ms"] = ms
