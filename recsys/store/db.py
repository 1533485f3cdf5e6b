"""Engines, sessions and schema upgrades.

SQLite gets WAL mode, foreign keys and a busy timeout on every connection; PostgreSQL gets pre-ping so a restarted
server is reconnected to. A dead database raises :class:`~recsys.errors.StoreUnavailable` with the URL (password
hidden) and what to do. :meth:`Store.read` runs a request's short read without leaving the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import SingletonThreadPool

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

from recsys.config import Settings, get_settings
from recsys.errors import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_no_wait(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA busy_timeout=0")  # on the event loop: fail at once instead of waiting for a lock


def make_engine(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _async_url(url: str) -> URL | None:
    """The PostgreSQL URL with psycopg's asyncio driver, or None where no async driver is at hand."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql" or u.get_driver_name() not in ("psycopg", "psycopg2"):
        return None
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("greenlet") is None:
        return None
    return u.set(drivername="postgresql+psycopg")


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """A database: its engine, a session factory and schema management."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._loop_engine: Engine | None = None  # SQLite: one connection per thread, for reads on the event loop
        self._async_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngine] = \
            weakref.WeakKeyDictionary()  # PostgreSQL: pooled asyncio connections belong to the loop that made them

    @classmethod
    def open(cls, settings: Settings | None = None, *, upgrade: bool = True) -> Store:
        """Open the configured database, bringing its schema to the newest migration first."""
        store = cls((settings or get_settings()).db_url)
        if upgrade:
            store.upgrade()
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error; connection failures become StoreUnavailable."""
        with self._connection_errors(), self._sessions() as s, s.begin():
            yield s

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
            if isinstance(e, OperationalError) or getattr(e, "connection_invalidated", False):
                raise self.unavailable(e) from e
            raise

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)`` for a request handler, without a threadpool hop: the hop (~0.2 ms) costs more than the
        short reads a request makes, and a cached answer needs nothing else.

        PostgreSQL: psycopg's asyncio driver, awaited on the event loop (a slow or dead server blocks nothing).
        SQLite: called on the loop's own connection. It is a library call on a local file, and in WAL mode a reader
        never waits for a writer; should a lock be held anyway (busy timeout 0), the read is retried in a worker
        thread, which may wait. Other databases: a worker thread. Errors map as in :meth:`session`.
        """
        backend = self.engine.dialect.name
        if backend == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            if self._loop_engine is None:
                self._loop_engine = create_engine(self.url, poolclass=SingletonThreadPool,
                                                  connect_args={"check_same_thread": False, "timeout": 0})
                event.listen(self._loop_engine, "connect", _sqlite_pragmas)
                event.listen(self._loop_engine, "connect", _sqlite_no_wait)
            try:
                with self._loop_engine.connect() as c:
                    return fn(c)
            except OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise self.unavailable(e) from e
        elif backend == "postgresql" and (aengine := self._async_engine()) is not None:
            with self._connection_errors():
                async with aengine.connect() as ac:
                    return await ac.run_sync(fn)
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._read_sync, fn)

    def _read_sync(self, fn: Callable[[Connection], T]) -> T:
        with self.reading() as c:
            return fn(c)

    def _async_engine(self) -> AsyncEngine | None:
        loop = asyncio.get_running_loop()
        aengine = self._async_engines.get(loop)
        if aengine is None:
            url = _async_url(self.url)
            if url is None:
                return None
            from sqlalchemy.ext.asyncio import create_async_engine

            aengine = create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            self._async_engines[loop] = aengine
        return aengine

    async def aclose(self) -> None:
        """Close this event loop's asyncio connections (the app's shutdown); :meth:`dispose` closes the rest."""
        aengine = self._async_engines.pop(asyncio.get_running_loop(), None)
        if aengine is not None:
            await aengine.dispose()

    def unavailable(self, e: Exception) -> StoreUnavailable:
        return StoreUnavailable(
            f"database {safe_url(self.url)} is unreachable ({str(e).splitlines()[0]}); "
            "start it or point RECSYS_DATABASE_URL at a running server"
        )

    def ping(self) -> bool:
        try:
            with self.engine.connect() as c:
                c.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    # -- schema ---------------------------------------------------------------------------------------------
    def alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        if revision == "head" and self.at_head():
            return
        try:
            command.upgrade(self.alembic_config(), revision)
        except OperationalError as e:
            raise self.unavailable(e) from e

    def downgrade(self, revision: str = "base") -> None:
        from alembic import command

        command.downgrade(self.alembic_config(), revision)

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as c:
                if not inspect(c).has_table("alembic_version"):
                    return None
                return c.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except OperationalError as e:
            raise self.unavailable(e) from e

    def at_head(self) -> bool:
        from alembic.script import ScriptDirectory

        heads = ScriptDirectory.from_config(self.alembic_config()).get_heads()
        return self.current_revision() in heads

    def dispose(self) -> None:
        self.engine.dispose()
        if self._loop_engine is not None:
            self._loop_engine.dispose()
