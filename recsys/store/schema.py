"""Schema changes made safely: one process at a time, never onto a schema this code does not know, and never a
downgrade that drops stored rows unless the operator said so.

Every process brings the schema to head on first use, so two replicas (or ``recsys serve`` beside ``recsys import``)
starting together on a new release would run the same migration at once: the loser failed with a traceback on
PostgreSQL and "unreachable" on SQLite. The migration therefore runs under a lock (an advisory lock on PostgreSQL, a
lock file beside a SQLite database), and whoever waited checks the revision again before doing anything.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import inspect, text

from recsys.config import without_password
from recsys.errors import SchemaMismatch

if TYPE_CHECKING:
    from recsys.store.db import Store

DERIVED_TABLES = frozenset({"catalogue_state"})
"""Version counters for cache invalidation: recreated by the migrations, nothing a downgrade loses."""

MIGRATION_LOCK_KEY = 0x7265637379730001
"""The PostgreSQL advisory lock held while migrating ("recsys" and 1 in a signed 64-bit key)."""


_held = threading.local()
"""``ids``: the stores whose migration lock this thread holds (taking it again would wait on itself)."""


def _held_here() -> set[int]:
    if not hasattr(_held, "ids"):
        _held.ids = set()
    return _held.ids


@contextmanager
def migration_lock(store: Store) -> Iterator[None]:
    """Hold the database's migration lock: one process migrates, the others wait for it."""
    with _lock(store):
        _held_here().add(id(store))
        try:
            yield
        finally:
            _held_here().discard(id(store))


@contextmanager
def _lock(store: Store) -> Iterator[None]:
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


def check_known(store: Store, current: str | None, wanted: str | None = None,
                direction: Literal["up", "down"] | None = None) -> None:
    """Refuse a database at a revision this code lacks (migrated by a newer recsys), one whose tables exist without
    a revision (:func:`check_stamped`), an unknown target, or a target on the wrong side of ``current`` for
    ``direction`` (an upgrade to an older revision was a silent no-op; a downgrade to a newer one a traceback)."""
    known = known_revisions(store)
    if current is not None and current not in known:
        raise SchemaMismatch(
            f"the database {without_password(store.url)} is at schema revision {current}, which this recsys does "
            f"not know (its newest is {known[-1]}): a newer recsys migrated it. Run that version or a later one, "
            f"or take the schema back with it (`recsys db downgrade {known[-1]}`, run by that newer version), or "
            "restore a backup made before that upgrade; nothing was changed")
    check_stamped(store, current)
    if wanted is not None and wanted not in (*known, "head", "base"):
        raise SchemaMismatch(f"no schema revision {wanted!r}: the known revisions are {', '.join(known)} (or head, "
                             "base); nothing was changed")
    if wanted is None or direction is None:
        return
    at = {"base": -1, "head": len(known) - 1, **{r: i for i, r in enumerate(known)}}
    here, there = at[current or "base"], at[wanted]
    if direction == "up" and there < here:
        raise SchemaMismatch(f"the database is at revision {current}, and {wanted} is older: `recsys db upgrade` "
                             f"only moves forward. To go back, run `recsys db downgrade {wanted}` (it names the "
                             "stored data it would drop first); nothing was changed")
    if direction == "down" and there > here:
        raise SchemaMismatch(f"the database is at revision {current or 'base'}, and {wanted} is newer: `recsys db "
                             f"downgrade` only moves back. To go forward, run `recsys db upgrade {wanted}`; nothing "
                             "was changed")


def recsys_tables(store: Store) -> list[str]:
    """recsys's own tables that the database holds (another application's tables beside them do not count)."""
    from recsys.store.tables import Base

    return sorted(set(inspect(store.engine).get_table_names()) & set(Base.metadata.tables))


def check_stamped(store: Store, current: str | None) -> None:
    """Refuse a database whose recsys tables exist but whose revision is missing (``alembic_version`` left out of
    a restore, or tables made by hand): Alembic would run every migration from the first on top of them, which
    failed half-way ("table api_keys already exists": a traceback on PostgreSQL, "unreachable" on SQLite)."""
    if current is not None or not (tables := recsys_tables(store)):
        return
    if id(store) not in _held_here():
        with migration_lock(store):  # a first migration under way elsewhere makes its tables before its stamp
            if store.current_revision() is not None:
                return
    shown = ", ".join(tables[:4]) + (f" and {len(tables) - 4} more" if len(tables) > 4 else "")
    problem = (f"the database {without_password(store.url)} has recsys tables ({shown}) but no schema revision: its "
               "alembic_version table is missing or empty (a restore that left it out, or tables made by hand), so "
               "recsys cannot tell which migrations it has; nothing was changed. ")
    own = table_shape(store)
    matches = [r for r, shape in revision_shapes(store).items() if shape == own]
    head = known_revisions(store)[-1]
    named = " or ".join(f"{r} (head)" if r == head else r for r in matches)
    if len(matches) == 1:
        todo = (f"Its tables, columns and indexes are those of revision {named}: if this recsys last migrated it, "
                f"record that with `recsys db stamp {matches[0]}`, then run the command again; else restore a backup "
                "that includes alembic_version")
    elif matches:
        todo = (f"Its tables, columns and indexes are those of revision {named} (they differ in triggers or "
                "functions only): record the one that last migrated it with `recsys db stamp REVISION`, or restore "
                "a backup that includes alembic_version")
    else:
        todo = (f"They match no revision of this recsys (newest {head}): restore a backup that includes "
                "alembic_version, or run the recsys version that made them")
    raise SchemaMismatch(problem + todo)


def check_stamp(store: Store, current: str | None, revision: str) -> str:
    """The revision ``recsys db stamp`` may record: only for a database with recsys tables and no revision, and
    only one whose tables, columns and indexes are that revision's. Returns the revision id (``head`` resolved)."""
    known = known_revisions(store)
    if current is not None:
        raise SchemaMismatch(f"the database is at revision {current}: `recsys db stamp` only records the revision "
                             "of a database that has none. Use `recsys db upgrade` or `recsys db downgrade`; nothing "
                             "was changed")
    if not recsys_tables(store):
        raise SchemaMismatch("the database has no recsys tables, so there is nothing to stamp: `recsys db upgrade` "
                             "creates them")
    wanted = known[-1] if revision == "head" else revision
    if wanted not in known:
        raise SchemaMismatch(f"no schema revision {revision!r}: the known revisions are {', '.join(known)} (or "
                             "head); nothing was changed")
    differs = _difference(revision_shapes(store)[wanted], table_shape(store))
    if differs:
        raise SchemaMismatch(f"the database's tables are not those of revision {wanted} ({'; '.join(differs[:5])}"
                             f"{f'; {len(differs) - 5} more' if len(differs) > 5 else ''}); nothing was changed. "
                             "Stamp the revision they are at, or restore a backup that includes alembic_version")
    return wanted


def table_shape(store: Store) -> dict[str, frozenset[str]]:
    """What tells revisions apart without reading data: per recsys table its columns and indexes (those that back
    a unique constraint left out: PostgreSQL lists them, SQLite does not) and, on SQLite, the triggers."""
    from recsys.store.tables import Base

    insp = inspect(store.engine)
    out = {t: frozenset([*(f"column {c['name']}" for c in insp.get_columns(t)),
                         *(f"index {i['name']}" for i in insp.get_indexes(t) if not i.get("duplicates_constraint"))])
           for t in insp.get_table_names() if t in Base.metadata.tables}
    if store.dialect == "sqlite":  # the scratch database is SQLite: other dialects' triggers have other names
        with store.engine.connect() as c:
            names = c.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
            out["(triggers)"] = frozenset(f"trigger {n}" for n in names)
    return out


def revision_shapes(store: Store) -> dict[str, dict[str, frozenset[str]]]:
    """:func:`table_shape` at each known revision, read off a scratch in-memory SQLite database migrated step by
    step (triggers only where ``store`` is SQLite too)."""
    scratch = type(store)("sqlite://")
    out = {}
    try:
        for revision in known_revisions(store):
            scratch.upgrade(revision)
            shape = table_shape(scratch)
            if store.dialect != "sqlite":
                shape.pop("(triggers)", None)
            out[revision] = shape
    finally:
        scratch.dispose()
    return out


def _difference(want: dict[str, frozenset[str]], have: dict[str, frozenset[str]]) -> list[str]:
    out = [f"table {t} missing" for t in sorted(set(want) - set(have))]
    out += [f"table {t} not expected" for t in sorted(set(have) - set(want))]
    for t in sorted(set(want) & set(have)):
        on = "" if t == "(triggers)" else f"{t}: "
        out += [f"{on}{x} missing" for x in sorted(want[t] - have[t])]
        out += [f"{on}{x} not expected" for x in sorted(have[t] - want[t])]
    return out


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


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Ctrl-C during a migration as KeyboardInterrupt (the CLI says "interrupted"): Alembic's clean-up after it
    meets the aborted transaction and raises PendingRollbackError, a page of traceback that hid the interrupt."""
    try:
        yield
    except Exception as e:
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__context__
        if cause is not None:
            raise KeyboardInterrupt from None
        raise
