"""Schema changes made safely: one process at a time, never onto a schema this code does not know, and never a
downgrade that drops stored rows unless the operator said so.

Every process brings the schema to head on first use, so two replicas (or ``recsys serve`` beside ``recsys import``)
starting together on a new release would run the same migration at once: the loser failed with a traceback on
PostgreSQL and "unreachable" on SQLite. The migration therefore runs under a lock (an advisory lock on PostgreSQL, a
lock file beside a SQLite database), and whoever waited checks the revision again before doing anything.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text

from recsys.config import without_password
from recsys.errors import SchemaMismatch

if TYPE_CHECKING:
    from recsys.store.db import Store

DERIVED_TABLES = frozenset({"catalogue_state"})
"""Version counters for cache invalidation: recreated by the migrations, nothing a downgrade loses."""

MIGRATION_LOCK_KEY = 0x7265637379730001
"""The PostgreSQL advisory lock held while migrating ("recsys" and 1 in a signed 64-bit key)."""


@contextmanager
def migration_lock(store: Store) -> Iterator[None]:
    """Hold the database's migration lock: one process migrates, the others wait for it."""
    if store.dialect == "postgresql":
        with store.engine.connect() as c:
            c.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            c.commit()  # a session lock: it outlives the transaction and holds no snapshot meanwhile
            try:
                yield
            finally:
                c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                c.commit()
        return
    path = store.engine.url.database if store.dialect == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    # A file of its own: opening and closing the database file itself would drop SQLite's POSIX locks on it.
    with open(lock_file(path), "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def script(store: Store) -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(store.alembic_config())


def known_revisions(store: Store) -> list[str]:
    """This code's revisions, oldest first."""
    return [r.revision for r in reversed(list(script(store).walk_revisions()))]


def check_known(store: Store, current: str | None, wanted: str | None = None) -> None:
    """Refuse a database at a revision this code lacks (migrated by a newer recsys), or an unknown target."""
    known = known_revisions(store)
    if current is not None and current not in known:
        raise SchemaMismatch(
            f"the database {without_password(store.url)} is at schema revision {current}, which this recsys does "
            f"not know (its newest is {known[-1]}): a newer recsys migrated it. Run that version or a later one, "
            "or restore a backup made before that upgrade; nothing was changed")
    if wanted is not None and wanted not in (*known, "head", "base"):
        raise SchemaMismatch(f"no schema revision {wanted!r}: the known revisions are {', '.join(known)} (or head, "
                             "base); nothing was changed")


def dropped_by_downgrade(store: Store, revision: str) -> list[str]:
    """What a downgrade to ``revision`` would delete that holds data: tables with rows and columns with values
    (of recsys's own tables; the full-text index is derived and rebuilt on upgrade), e.g. ``table served_lists
    (1,204 rows)``. The target's schema is read off a scratch in-memory database migrated to that revision."""
    from recsys.store.tables import Base

    scratch = type(store)("sqlite://")
    try:
        if revision != "base":
            scratch.upgrade(revision)
        target = _columns(scratch)
    finally:
        scratch.dispose()
    now, lost = _columns(store), []
    with store.engine.connect() as c:
        for table in sorted((set(now) & set(Base.metadata.tables)) - DERIVED_TABLES):
            if table not in target:
                rows = c.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                lost += [f"table {table} ({_rows(rows)})"] if rows else []
                continue
            for col in sorted(now[table] - target[table]):
                rows = c.execute(text(f'SELECT count(*) FROM "{table}" WHERE "{col}" IS NOT NULL')).scalar_one()
                lost += [f"column {table}.{col} (a value in {_rows(rows)})"] if rows else []
    return lost


def _rows(n: int) -> str:
    return f"{n:,} row" + ("s" if n != 1 else "")


def _columns(store: Store) -> dict[str, set[str]]:
    insp = inspect(store.engine)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names() if t != "alembic_version"}


def lock_file(db_path: str) -> Path:
    """The SQLite lock file :func:`migration_lock` uses (beside the database's -wal and -shm files)."""
    return Path(f"{db_path}-migrate.lock")
