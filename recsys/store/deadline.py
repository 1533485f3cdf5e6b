"""Bounded waits for the database on a request's path: a hung server, a cut network or a held lock answers 503
within ``store.request_read_timeout_s`` instead of holding the request (and a worker thread) for as long as it lasts.

The API sets the bound for everything a request does (:func:`bounded`: a context variable, so it follows the
request into worker threads); offline jobs (imports, builds, the server's refresh task) run unbounded. Under a bound:

- PostgreSQL: connecting gives up after the bound (libpq's ``connect_timeout``, at least 2 s). The server bounds
  its own waits: a connection checked out under a bound gets ``lock_timeout`` and ``statement_timeout`` a little
  under it (set with the check-out ping, so no extra round trip; reset when unbounded work checks it out), so a lock
  wait or a long statement ends on the server, whose backend is then free, and the connection stays usable. Every
  statement, commit and the check-out ping is also watched by one thread: past the deadline it asks the server to
  cancel the statement (what a wait the server does not bound needs), and if the call has not ended
  :data:`CANCEL_GRACE_S` later (a frozen server, or a network that holds every byte: the cancel cannot arrive) it
  shuts the connection's socket. The blocked call then fails as a lost connection (SQLAlchemy drops it from the
  pool). Either way the store answers :class:`~recsys.errors.StoreTimeout`.
- SQLite: the wait is for a lock (another writer, e.g. an import): the connection's busy timeout is the bound, so
  a request gives up with StoreBusy while the lock holder keeps its 30 s. Unbounded work may ask for a shorter busy
  wait of its own (:func:`sqlite_busy`: the served-list writer, whose backoff decides when to try again).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeAlias

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

log = logging.getLogger(__name__)

_bound: ContextVar[float | None] = ContextVar("recsys_db_bound", default=None)
_busy: ContextVar[float | None] = ContextVar("recsys_sqlite_busy", default=None)
SQLITE_BUSY_MS = 30_000
"""The busy timeout of unbounded work (imports, builds): they wait for each other."""
SERVER_SHARES = (0.9, 0.95)
"""The shares of the bound PostgreSQL's own ``lock_timeout`` and ``statement_timeout`` get: the server ends the waits
it can end before the watchdog acts (which costs a cancel request, or the connection), and a lock wait first, so that
the error says "lock timeout"."""
CANCEL_GRACE_S = 1.0
"""How long a cancelled call may take to end before its socket is shut (at most the bound itself)."""
CANCEL_TIMEOUT_S = 5.0
"""How long a cancel request may take to be delivered (it runs in a thread of its own, never the watchdog's)."""
TIMEOUT_STATES = frozenset({"55P03", "57014"})
"""PostgreSQL's lock_not_available (``lock_timeout``) and query_canceled (``statement_timeout``, a cancel)."""
_TOKEN = "recsys_deadline"
_SERVER_TIMEOUTS = "recsys_server_timeouts"
_TAG = "recsys_deadline_s"


class DeadlineExceeded(TimeoutError):
    """A database call given up when its bound passed (the event loop's reads); ``why``: the server's words, where
    its own timeout ended the wait."""

    def __init__(self, seconds: float, why: str = "") -> None:
        super().__init__(f"no answer in {seconds:g} s" + (f" ({why})" if why else ""))
        self.seconds, self.why = seconds, why


def exceeded(e: BaseException) -> float | None:
    """The bound whose end ``e`` is: the watchdog acted on the call, or the server's lock or statement timeout (or
    a cancel) ended it under a bound; None otherwise."""
    for err in (e, getattr(e, "orig", None), e.__cause__):
        if isinstance(err, DeadlineExceeded):
            return err.seconds
        if getattr(err, _TAG, None) is not None:
            return float(getattr(err, _TAG))
        if getattr(err, "sqlstate", None) in TIMEOUT_STATES:
            return _bound.get()
    return None


def timed_out(e: BaseException) -> bool:
    """Whether ``e`` ended a wait at a bound: the request's (:func:`exceeded`) or one set on the server."""
    return exceeded(e) is not None or any(getattr(err, "sqlstate", None) in TIMEOUT_STATES
                                          for err in (e, getattr(e, "orig", None), e.__cause__))


@contextlib.contextmanager
def bounded(seconds: float | None) -> Iterator[None]:
    """Database calls made inside (in this context and the worker threads it starts) wait at most ``seconds``."""
    token = _bound.set(seconds if seconds and seconds > 0 else None)
    try:
        yield
    finally:
        _bound.reset(token)


@contextlib.contextmanager
def sqlite_busy(seconds: float) -> Iterator[None]:
    """SQLite's busy timeout for unbounded work done inside (in this context only): a write lock held longer than
    ``seconds`` fails the statement (StoreBusy) instead of waiting SQLITE_BUSY_MS. A request's bound still wins;
    PostgreSQL is not affected."""
    token = _busy.set(seconds)
    try:
        yield
    finally:
        _busy.reset(token)


Interrupt: TypeAlias = Callable[[], "tuple[float, Interrupt] | None"]
"""What the watchdog calls at a deadline; it may return a further step and the seconds after which to take it."""


class Watchdog:
    """One daemon thread that calls an armed interrupt once its deadline passes (and the steps it returns after
    theirs), unless disarmed before."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Interrupt]] = []
        self._armed: dict[int, bool] = {}  # token -> fired
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, make: Callable[[int], Interrupt]) -> int:
        """Call the interrupt ``make(token)`` gives in ``seconds`` unless disarmed before; returns the token."""
        token = next(self._tokens)
        interrupt = make(token)
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

    def watching(self, token: int) -> bool:
        """Whether ``token`` is still armed (its call has not ended)."""
        with self._cond:
            return token in self._armed

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
                then = interrupt()
            except Exception as e:  # a connection closed meanwhile: nothing left to interrupt
                log.debug("database interrupt failed: %s", e)
                continue
            if then is not None:
                with self._cond:
                    if token in self._armed:  # not disarmed meanwhile
                        heapq.heappush(self._heap, (time.monotonic() + then[0], token, then[1]))


WATCHDOG = Watchdog()


class _Stop:
    """The watchdog's steps for one call on a PostgreSQL connection that outlived its bound of ``seconds``."""

    def __init__(self, dbapi_conn: Any, seconds: float, token: int) -> None:
        self.dbapi_conn, self.seconds, self.token = dbapi_conn, seconds, token

    def __call__(self) -> tuple[float, Interrupt]:
        """Ask the server to cancel the statement: its backend stops waiting (on a lock, say) now, not when the
        wait ends, and the connection stays usable. In a thread: a cancel opens a connection of its own, which a
        hung server keeps waiting."""
        threading.Thread(target=self._cancel, name="recsys-db-cancel", daemon=True).start()
        log.warning("the database gave no answer within %g s; asked it to cancel the statement", self.seconds)
        return min(CANCEL_GRACE_S, self.seconds), self._shut

    def _cancel(self) -> None:
        if not WATCHDOG.watching(self.token):
            return  # the call ended meanwhile: a cancel now could end the connection's next statement
        try:
            cancel_safe = getattr(self.dbapi_conn, "cancel_safe", None)  # psycopg >= 3.2: with a timeout
            if cancel_safe is not None:
                cancel_safe(timeout=CANCEL_TIMEOUT_S)
            else:
                self.dbapi_conn.cancel()
        except Exception as e:  # unreachable: the socket is shut next
            log.debug("database cancel failed: %s", e)

    def _shut(self) -> None:
        """The call outlived the cancel too: the server or the network is not answering at all. Shut the socket
        (``shutdown`` acts on the socket a duplicate shares), so the call fails as a lost connection."""
        fd = self.dbapi_conn.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as s:
            s.shutdown(socket.SHUT_RDWR)
        log.warning("the database gave no answer within %g s, nor to the cancel; connection dropped", self.seconds)


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
            seconds = _disarm(ctx.connection.info)
            if seconds is not None:  # the watchdog acted: the error (a cancel, a lost connection) is the deadline's
                with contextlib.suppress(AttributeError):
                    setattr(ctx.original_exception, _TAG, seconds)

    def connect_timeout(_dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seconds = _bound.get()
        cparams.setdefault("connect_timeout", max(2, math.ceil(seconds)) if seconds is not None else 30)

    def ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """The pool's pre-ping (a pooled connection may have died with a restarted server), under the bound:
        SQLAlchemy's own pre-ping cannot be watched. A failed one is replaced by a new connection."""
        _arm(record.info, dbapi_conn)
        autocommit = dbapi_conn.autocommit
        try:
            dbapi_conn.autocommit = True  # no transaction left open by the ping; the timeouts set are the session's
            with dbapi_conn.cursor() as cur:
                _server_timeouts(cur, record.info)
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


SET_TIMEOUTS = "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)"
"""Session-level: on a connection in autocommit mode they outlive the statement."""


def server_timeouts(seconds: float) -> tuple[str, str]:
    """PostgreSQL's own ``lock_timeout`` and ``statement_timeout`` for a bound of ``seconds``."""
    lock, statement = (max(1, round(seconds * 1000 * share)) for share in SERVER_SHARES)
    return f"{lock}ms", f"{statement}ms"


def _server_timeouts(cur: Any, info: dict[str, Any]) -> None:
    """The ping: a round trip that also gives the connection's session the current bound's server-side timeouts
    when they differ from what it has (RESET, for unbounded work: the server's or role's own settings)."""
    seconds = _bound.get()
    wanted = None if seconds is None else server_timeouts(seconds)
    if info.get(_SERVER_TIMEOUTS) == wanted:
        cur.execute("SELECT 1")
    elif wanted is None:
        cur.execute("RESET lock_timeout; RESET statement_timeout")
    else:
        cur.execute(SET_TIMEOUTS, wanted)
    info[_SERVER_TIMEOUTS] = wanted


def _arm(info: dict[str, Any], dbapi_conn: Any) -> None:
    """Watch the connection's next call under the current bound (replacing any watch left on it)."""
    _disarm(info)
    seconds = _bound.get()
    if seconds is not None:
        info[_TOKEN] = (WATCHDOG.arm(seconds, lambda token: _Stop(dbapi_conn, seconds, token)), seconds)


def _disarm(info: dict[str, Any]) -> float | None:
    """Stop watching the connection; the bound when the watchdog had acted on its call, else None."""
    armed = info.pop(_TOKEN, None)
    if armed is not None and WATCHDOG.disarm(armed[0]):
        return float(armed[1])
    return None


def _sqlite_busy_timeout(conn: Any, cursor: Any, *_: Any) -> None:
    seconds = _bound.get()
    if seconds is None:
        seconds = _busy.get()
    ms = SQLITE_BUSY_MS if seconds is None else max(1, int(seconds * 1000))
    if conn.info.get("busy_ms", SQLITE_BUSY_MS) != ms:
        cursor.execute(f"PRAGMA busy_timeout={ms}")
        conn.info["busy_ms"] = ms


class OncePerMinute(logging.Filter):
    """Lets a logger's message through at most once a minute (numbers and addresses aside: a repeated connect
    failure, a connection's repr), so an outage under load does not flood the log."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:  # what someone debugging turned on: all of it
            return True
        key = _NUMBERS.sub("#", record.getMessage())[:500]
        now = time.monotonic()
        with self._lock:
            if now - self._seen.get(key, -math.inf) < self.every_s:
                return False
            if len(self._seen) > 200:
                self._seen.clear()
            self._seen[key] = now
        return True

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")
REPEATS = OncePerMinute()
"""The watchdog's own warnings, once a minute per bound: a hung server under load would log each call."""
log.addFilter(REPEATS)
