"""Engines, sessions and reads (schema upgrades: :mod:`recsys.store.upgrades`).

SQLite gets WAL mode, foreign keys and a busy timeout on every connection; PostgreSQL gets pre-ping so a restarted
server is reconnected to. A database that cannot serve raises :class:`~recsys.errors.StoreUnavailable` with the URL
(password hidden), what is wrong (down, a refused login, no such database, or no answer within a request's bound:
:class:`~recsys.errors.StoreTimeout`) and what to do. :meth:`Store.fetch` runs a request's short read without
leaving the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Executable, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from recsys.config import Settings, get_settings, without_password
from recsys.errors import (
    DiskFull,
    StoreBusy,
    StoreDenied,
    StoreTimeout,
    StoreUnavailable,
)
from recsys.store import deadline, upgrades
from recsys.store.loop_reads import LoopReads
from recsys.store.sqlite import create_private, damaged, engine_args, file_unavailable, sqlite_pragmas
from recsys.store.upgrades import refused

log = logging.getLogger(__name__)

CONFLICT_STATES = frozenset({"40P01", "40001"})
"""PostgreSQL's deadlock_detected and serialization_failure: a retry succeeds, the server is fine."""
def make_engine(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **engine_args(u.database))  # a read-only mount's file: opened read-only
        create_private(engine)
        event.listen(engine, "connect", sqlite_pragmas)
        deadline.install(engine)
        return engine
    # No pool_pre_ping: deadline.install pings on check-out itself, under a request's bound.
    engine = create_engine(url, pool_size=10, max_overflow=20)
    deadline.install(engine)
    return engine


class Store:
    """A database: its engine, a session factory and schema management."""

    def __init__(self, url: str, *, read_timeout_s: float = 5.0, loop_connections: int = 16,
                 loop_connection_lifetime_s: float = 3600.0, loop_connection_idle_s: float = 600.0) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._loop_reads = LoopReads(self, timeout_s=read_timeout_s, max_connections=loop_connections,
                                     max_lifetime_s=loop_connection_lifetime_s, max_idle_s=loop_connection_idle_s)
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the SQLite file this process opened

    @classmethod
    def open(cls, settings: Settings | None = None, *, upgrade: bool = True) -> Store:
        """Open the configured database, bringing its schema to the newest migration first."""
        settings = settings or get_settings()
        st = settings.store
        _warn_if_lost(settings)
        store = cls(settings.db_url, read_timeout_s=st.request_read_timeout_s, loop_connections=st.loop_connections,
                    loop_connection_lifetime_s=st.loop_connection_lifetime_s,
                    loop_connection_idle_s=st.loop_connection_idle_s)
        if upgrade:
            store.upgrade()
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def in_memory(self) -> bool:
        """A scratch SQLite database in memory (the schema checks migrate one step by step)."""
        return self.dialect == "sqlite" and self.engine.url.database in (None, "", ":memory:")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error; connection failures become StoreUnavailable."""
        self._check_file()
        with self._connection_errors(), self._sessions() as s, s.begin():
            yield s

    def _check_file(self) -> None:
        """A SQLite file deleted or replaced under a running process: its pooled connections still hold the old
        file, so writes would be acknowledged and then lost with it. Checked before every write session and ping."""
        path = self._loop_reads.sqlite_path
        if path is None:
            return
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None and self._file_id in (None, (st.st_dev, st.st_ino)):
            self._file_id = (st.st_dev, st.st_ino)
            return
        if st is None and self._file_id is None:
            return  # not created yet: the first connection creates it
        raise StoreUnavailable(f"the database file {path} was {'deleted' if st is None else 'replaced'} while this "
                               "process was running; nothing was changed. Put the file back (or restore it from a "
                               "backup), then restart the server or command")

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A plain connection for the per-request reads (no ORM session: its set-up costs more than a short query),
        with the same StoreUnavailable mapping as :meth:`session`."""
        with self._connection_errors(), self.engine.connect() as c:
            yield c

    @contextmanager
    def _connection_errors(self) -> Iterator[None]:
        """Connection failures (and invalidated connections) raised inside become StoreUnavailable."""
        try:
            yield
        except (OperationalError, DBAPIError) as e:
            if getattr(e.orig, "sqlstate", None) in CONFLICT_STATES:
                raise StoreBusy("the database gave up this write to resolve a conflict with a concurrent one "
                                f"({str(e.orig).splitlines()[0]}); nothing of it was stored: retry it") from e
            if (denied := StoreDenied.of(without_password(self.url), e)) is not None:  # a missing GRANT, not "down"
                raise denied from e
            if isinstance(e, OperationalError) or getattr(e, "connection_invalidated", False) or damaged(e):
                if (said := refused(e)) is not None:
                    raise said from e
                if self.dialect == "sqlite" and ("locked" in str(e.orig) or "busy" in str(e.orig)):
                    raise StoreBusy("the database is busy with another write (an import or a build?); retry "
                                    "shortly, or use PostgreSQL for writes during imports") from e
                raise self.unavailable(e) from e
            raise

    async def fetch(self, statement: Executable, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a prebuilt read for a request handler, awaited on the event loop without a threadpool hop
        (:mod:`recsys.store.loop_reads`: the driver itself on SQLite, a psycopg_pool on PostgreSQL). An unreachable,
        hung or locked-out database raises StoreUnavailable, as :meth:`session` does."""
        return await self._loop_reads.fetch(statement, params)

    def read(self, statement: Executable, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """:meth:`fetch` from a worker thread (a ranking thread's reads on the request path): the driver itself on
        SQLite, SQLAlchemy elsewhere; the same errors."""
        return self._loop_reads.rows_now(statement, params)

    def pool_stats(self) -> dict[str, int]:
        """The event loop's PostgreSQL connection pools (:data:`recsys.store.loop_reads.POOL_STATS`: open, idle,
        waiting, errors), summed; zeros on SQLite."""
        return self._loop_reads.pool_stats()

    async def aclose(self) -> None:
        """Close this event loop's connections (the app's shutdown); :meth:`dispose` closes the rest."""
        await self._loop_reads.aclose()

    def unavailable(self, e: Exception) -> StoreUnavailable:
        """The error for a database that cannot serve, saying what to do: a SQLite file that is damaged, read-only
        or cannot be opened is not a server to start, nor is a server that refused the login or answered too late."""
        url, why = without_password(self.url), str(e).splitlines()[0]
        if self.dialect != "sqlite":
            return _server_unavailable(url, e, why)
        return file_unavailable(self.engine.url.database, url, e)

    def ping(self, timeout_s: float | None = None) -> bool:
        """Whether the database answers (within ``timeout_s``, when given)."""
        try:
            self._check_file()
            with deadline.bounded(timeout_s) if timeout_s else contextlib.nullcontext(), self.engine.connect() as c:
                c.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    # -- schema (recsys.store.upgrades) ------------------------------------------------------------------------
    def alembic_config(self) -> Any:
        return upgrades.alembic_config(self)

    def upgrade(self, revision: str = "head") -> None:
        """Migrate up to ``revision``; processes starting together take turns (:mod:`recsys.store.schema`)."""
        upgrades.upgrade(self, revision)

    def downgrade(self, revision: str = "base") -> None:
        upgrades.downgrade(self, revision)

    def stamp(self, revision: str = "head") -> str:
        """Record ``revision`` as the schema of a database whose recsys tables exist without one (restored without
        ``alembic_version``); refused unless its tables are that revision's. Returns the revision id."""
        return upgrades.stamp(self, revision)

    def current_revision(self) -> str | None:
        return upgrades.current_revision(self)

    def at_head(self) -> bool:
        return upgrades.at_head(self)

    def dispose(self) -> None:
        self.engine.dispose()
        self._loop_reads.close()


AUTH_STATES = frozenset({"28P01", "28000"})
"""invalid_password and invalid_authorization_specification (no such role, no pg_hba.conf entry, no LOGIN)."""
_AUTH_WORDS = ("password authentication failed", "no password supplied", "authentication failed",
               "no pg_hba.conf entry", "is not permitted to log in", "role \"")
"""libpq hands a refused login over as text only (no SQLSTATE on a connection that was never made)."""
_MISSING_DB = re.compile(r'database "[^"]*" does not exist')


def _server_unavailable(url: str, e: BaseException, why: str) -> StoreUnavailable:
    """A PostgreSQL server's failure in its own words: no answer within the request's bound (busy or locked, not
    down), a refused login, no such database, else unreachable."""
    state = getattr(getattr(e, "orig", None) or e, "sqlstate", None)
    if deadline.timed_out(e):
        seconds = deadline.exceeded(e)
        cause = (e.why if isinstance(e, deadline.DeadlineExceeded) else why)  # the server's words, if any
        detail = f" ({cause})" if cause else ""
        waited = f"in {seconds:g} s" if seconds is not None else "in time: the server's own timeout ended the wait"
        return StoreTimeout(
            f"database {url} gave no answer {waited}{detail}: a table is locked (by a migration, VACUUM FULL or a "
            "long transaction) or the server is overloaded or hung. Retry shortly; if it lasts, pg_stat_activity "
            "shows what waits (wait_event_type 'Lock') and pg_blocking_pids() who holds it up", seconds)
    if state == "3D000" or _MISSING_DB.search(why):
        name = make_url(url).database or "NAME"
        return StoreUnavailable(f"database {url} does not exist on that server ({why}): create it (`createdb "
                                f"{name}` or CREATE DATABASE) or fix the database name in RECSYS_DATABASE_URL")
    if state == "53100":  # disk_full: the server is up, its disk is not
        return DiskFull(f"the disk of database {url} is full on the server ({why}); the write was rolled back, "
                        "nothing of it was stored. Free space on the server's data disk and run it again")
    if state in AUTH_STATES or (state is None and any(w in why for w in _AUTH_WORDS)):
        return StoreUnavailable(f"database {url} refused the login ({why}): check the user and password in "
                                "RECSYS_DATABASE_URL, and that the role exists, may log in and is let in by the "
                                "server's pg_hba.conf")
    return StoreUnavailable(f"database {url} is unreachable ({why}); "
                            "start it or point RECSYS_DATABASE_URL at a running server")


def _warn_if_lost(settings: Settings) -> None:
    """A SQLite file that is gone from a home that holds built generations was moved or deleted (or the URL has a
    typo): SQLite would silently start an empty one, and the index would serve items the store no longer has."""
    url = make_url(settings.db_url)
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or Path(path).exists():
        return
    if (Path(settings.home) / "index").is_dir():
        log.warning("the database file %s does not exist, but %s holds index generations built from one: a new, "
                    "empty database is created. If the data was moved, point RECSYS_DATABASE_URL at it; else import "
                    "it again (`recsys import ...`, `recsys build`)", path, settings.home)

