"""SQLite connections as recsys opens them: the pragmas of every connection, and the engine migrations run on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_migration_connect(dbapi_conn: Any, record: Any) -> None:
    sqlite_pragmas(dbapi_conn, record)
    dbapi_conn.isolation_level = None  # the driver opens no transaction of its own: the "begin" listener does


def migration_engine(url: str) -> Engine:
    """A SQLite engine whose transactions hold DDL too, for migrations. The driver starts a transaction only before
    INSERT/UPDATE/DELETE, so a migration's CREATE/DROP ran committed at once: one stopped midway (Ctrl-C, a kill)
    left its tables at the old revision, and every later start failed on them ("table items_fts already exists").
    SQLAlchemy's recipe: no driver transactions, an explicit BEGIN for each of SQLAlchemy's."""
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, poolclass=NullPool)
    event.listen(engine, "connect", _sqlite_migration_connect)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine
