"""SQLite connections as recsys opens them: the pragmas of every connection, and the engine migrations run on."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool


def enable_wal(execute: Callable[[str], Any], wait_s: float = 60.0) -> None:
    """Put the database in WAL mode. Processes opening a new file together (Ray workers on one cache, API workers
    on a fresh store) can get "database is locked" here at once: SQLite does not always run the busy handler while
    another connection sets up the WAL, so this waits itself, up to ``wait_s``."""
    deadline, pause = time.monotonic() + wait_s, 0.002
    while True:
        try:
            execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    enable_wal(cur.execute)
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
