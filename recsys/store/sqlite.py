"""SQLite connections as recsys opens them: the pragmas of every connection, the engine migrations run on, and what
SQLite's errors mean for the user."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from recsys.errors import DiskFull, StoreDamaged, StoreReadOnly, StoreUnavailable


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


def create_private(engine: Engine) -> None:
    """Have a SQLite file that ``engine`` is about to create made readable by its owner only: it holds every
    shopper's events and the API key hashes, and SQLite would create it under the umask (0644, usually). Its -wal and
    -shm files take the file's mode. An existing file keeps its own; a URI filename is the caller's own to set."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:") or engine.url.query.get("uri"):
        return

    def before_connect(*_: Any) -> None:
        # an existing file is kept as it is; a missing directory is SQLite's to report
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    event.listen(engine, "do_connect", before_connect)


def read_only_uri(database: str | None) -> str | None:
    """The URI to open the SQLite file ``database`` read-only with, where it must be: it exists in a directory that
    cannot be written (a read-only mount) and has no -wal file. A WAL-mode file is otherwise unreadable there:
    SQLite must create its -shm file even to read (``mode=ro`` too). ``immutable=1`` drops that need, and ignores
    a WAL, so it is only for a file with none (a cleanly closed store). Else None: opened as usual (where a -wal
    and -shm are left, SQLite reads through them by itself). Judged on the resolved path (a link to a writable
    store is opened as usual). A file opened immutable does not see later writes made by another process."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()  # a link's target: SQLite puts -wal and -shm beside it, not beside the link
    if not path.is_file() or os.access(path.parent, os.W_OK) or Path(f"{path}-wal").exists():
        return None
    return f"file:{quote(str(path))}?mode=ro&immutable=1"


def engine_args(database: str | None) -> dict[str, Any]:
    """``create_engine``'s keywords for the SQLite file ``database``: opened as :func:`read_only_uri` says where it
    must be (reads work, a write fails as read-only: :class:`~recsys.errors.StoreReadOnly`)."""
    args: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
    uri = read_only_uri(database)
    if uri is not None:
        args["creator"] = lambda: sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
    return args


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
    create_private(engine)
    event.listen(engine, "connect", _sqlite_migration_connect)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def damaged(e: BaseException) -> bool:
    """SQLite's words for a file that is not a database, or a corrupt one (a damaged full-text index's pages make
    its virtual table fail to open)."""
    text_ = str(getattr(e, "orig", None) or e)
    return any(w in text_ for w in ("file is not a database", "disk image is malformed", "vtable constructor failed"))


def file_unavailable(path: str | None, url: str, e: Exception) -> StoreUnavailable:
    """The error for a SQLite file that cannot serve, saying what to do: a file that is damaged, full, read-only or
    cannot be opened is not a server to start."""
    why = str(e).splitlines()[0]
    if damaged(e):
        return StoreDamaged(
            f"the database file {path} is damaged ({why}); nothing was changed. Restore it from a backup, "
            f"or move it aside and import the data again (`recsys import ...`, then `recsys build`)")
    # SQLITE_FULL: a disk to free; with no byte left SQLite cannot even make the WAL's -shm file: "disk I/O error"
    if "database or disk is full" in why or ("disk I/O error" in why and _no_space_beside(path)):
        return DiskFull.sqlite(Path(path or "."), str(getattr(e, "orig", None) or e).splitlines()[0])
    if "disk I/O error" in why:
        return StoreUnavailable(f"reading or writing the database file {path} failed ({why}): check the disk "
                                "holding it (the system log names the device), then run it again")
    if "readonly" in why:
        return StoreReadOnly(f"the database file {path} is read-only ({why}): it can be read, not written; nothing "
                             "was changed. Make the file and its directory writable (a read-only mount: remount it "
                             "read-write, then restart a server that opened it), or point RECSYS_DATABASE_URL at a "
                             "writable copy")
    if "unable to open" in why:
        return StoreUnavailable(f"cannot open the database file {path} ({why}): its directory is missing "
                                "or not writable; fix RECSYS_HOME or RECSYS_DATABASE_URL")
    return StoreUnavailable(f"database {url} is unreachable ({why}); "
                            "start it or point RECSYS_DATABASE_URL at a running server")


def _no_space_beside(database: str | None) -> bool:
    """Whether the disk holding the SQLite file ``database`` has (almost) no byte left."""
    try:
        return shutil.disk_usage(Path(database or ".").absolute().parent).free < 64 * 1024
    except OSError:
        return False
