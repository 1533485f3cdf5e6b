"""Schema upgrades of a :class:`~recsys.store.db.Store` (its methods of the same names call these): Alembic's upgrade,
downgrade and stamp, run one process at a time (:mod:`recsys.store.schema`), with the database's refusals said in
recsys's words."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError

from recsys.config import without_password
from recsys.errors import SchemaBehind, SchemaMismatch, StoreDenied, StoreError, ValidationFailed
from recsys.store import deadline
from recsys.store.sqlite import damaged, migration_engine

if TYPE_CHECKING:
    from recsys.store.db import Store

log = logging.getLogger(__name__)

_SETTINGS_STATES = frozenset({"25006", *deadline.TIMEOUT_STATES})  # read_only_sql_transaction, the timeouts
REFUSED_CLASSES = frozenset({"22", "54"})
"""SQLSTATE classes data_exception and program_limit_exceeded (psycopg raises the latter as an OperationalError): the
values written are at fault, not the server; a retry fails the same way."""

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "_migrations"
"""Alembic scripts: the top-level migrations/ (linked as recsys/_migrations, so that a wheel ships them too)."""


def alembic_config(store: Store) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", store.url.replace("%", "%%"))
    cfg.attributes["engine"] = store.engine
    return cfg


@contextmanager
def _migrating(store: Store) -> Iterator[Any]:
    """:meth:`alembic_config` for a migration: on SQLite over :func:`migration_engine`, every revision of the
    run in one transaction (all of it applied, or the database left as it was)."""
    cfg = alembic_config(store)
    if store.dialect != "sqlite" or store.in_memory:
        yield cfg  # an in-memory database lives in its one connection: no second engine can reach it
        return
    engine = migration_engine(store.url)
    cfg.attributes.update(engine=engine, transactional_ddl=True)
    try:
        yield cfg
    finally:
        engine.dispose()


def upgrade(store: Store, revision: str = "head") -> None:
    """Migrate up to ``revision``; processes starting together take turns (:mod:`recsys.store.schema`)."""
    from alembic import command

    from recsys.store import schema

    if revision == "head" and at_head(store):
        return
    current = None
    try:
        with schema.migration_lock(store), _alembic_refusal(store.url), schema.interrupts_kept():
            current = current_revision(store)
            schema.check_known(store, current, revision, "up")
            if revision == "head" and at_head(store):
                return  # another process migrated while this one waited
            if current is not None and not store.in_memory:  # an upgrade of recsys: the older one refuses it
                target = schema.known_revisions(store)[-1] if revision == "head" else revision
                log.warning("upgrading the schema of %s from revision %s to %s; an older recsys refuses it "
                            "afterwards (`recsys db downgrade %s` run by this version takes it back)",
                            without_password(store.url), current, target, current)
            with _migrating(store) as cfg:
                command.upgrade(cfg, revision)
    except DBAPIError as e:
        if (settings := _server_settings_refused(store, e, current, revision)) is not None:
            raise settings from e
        if isinstance(e, OperationalError):
            raise refused(e) or _failed_migration(store, e, current, revision) or store.unavailable(e) from e
        if damaged(e):
            raise store.unavailable(e) from e
        raise


def _server_settings_refused(store: Store, e: DBAPIError, current: str | None, wanted: str) -> StoreError | None:
    """A PostgreSQL migration stopped by the server's settings (its one transaction rolled back): a read-only
    database (a replica follows its primary's upgrade: wait) or a timeout (a retry as it is fails the same way)."""
    from recsys.store import schema

    why, state = (str(e.orig).splitlines() or [""])[0], getattr(e.orig, "sqlstate", None)
    if store.dialect != "postgresql" or state not in _SETTINGS_STATES or (
            state == "57014" and "statement timeout" not in why):  # 57014 by hand (pg_cancel_backend): no setting
        return None
    url, target = without_password(store.url), schema.known_revisions(store)[-1] if wanted == "head" else wanted
    step = f"the schema upgrade of {url}{f' from revision {current}' if current else ''} to {target}"
    if state == "25006":
        return SchemaBehind(
            f"{step} was refused: the database is read-only ({why}: a read replica, or "
            "default_transaction_read_only); nothing was changed. Upgrade the schema on the writable primary "
            "first (`recsys db upgrade` with RECSYS_DATABASE_URL pointing at it): a replica follows it")
    setting = "lock_timeout" if state == "55P03" or "lock timeout" in why else "statement_timeout"
    return SchemaMismatch(
        f"{step} was cancelled by the server's {setting} ({why}); nothing was changed. A migration can outlast it "
        "(a large catalogue, a long transaction's lock): run the upgrade once with it off: "
        f"RECSYS_DATABASE_URL='{url}{'&' if '?' in url else '?'}options=-c%20{setting}%3D0' recsys db upgrade")


def _failed_migration(store: Store, e: OperationalError, current: str | None, wanted: str) -> SchemaMismatch | None:
    """A SQLite migration the file refused for its contents (a table or trigger already there, left by an upgrade
    that an older recsys stopped midway) is no server to start: say so, and that nothing was changed."""
    if store.dialect != "sqlite" or current is None or damaged(e) or "already exists" not in str(e.orig):
        return None
    why = str(e.orig).splitlines()[0]
    return SchemaMismatch(
        f"the schema upgrade of {store.engine.url.database} from revision {current} to {wanted} failed ({why}); "
        f"the database is still at {current}, unchanged. An upgrade stopped midway by an older recsys (before "
        "migrations ran in one transaction) leaves such objects behind: restore the file from a backup, or ask "
        "for help with the object named above (it holds no data of its own unless its name starts with "
        "_alembic_tmp_)")


def downgrade(store: Store, revision: str = "base") -> None:
    from alembic import command

    from recsys.store import schema

    with schema.migration_lock(store), _alembic_refusal(store.url), schema.interrupts_kept():
        schema.check_known(store, current_revision(store), revision, "down")
        with _migrating(store) as cfg:
            command.downgrade(cfg, revision)


def stamp(store: Store, revision: str = "head") -> str:
    """Record ``revision`` as the schema of a database whose recsys tables exist without one (restored without
    ``alembic_version``): refused unless its tables, columns and indexes are that revision's
    (:func:`recsys.store.schema.check_stamp`). Nothing but the stamp is written; returns the revision id."""
    from alembic import command

    from recsys.store import schema

    with schema.migration_lock(store), _alembic_refusal(store.url):
        wanted = schema.check_stamp(store, current_revision(store), revision)
        command.stamp(alembic_config(store), wanted)
    return wanted


def current_revision(store: Store) -> str | None:
    with store._connection_errors(), store.engine.connect() as c:
        if not inspect(c).has_table("alembic_version"):
            return None
        return c.execute(text("SELECT version_num FROM alembic_version")).scalar()


def at_head(store: Store) -> bool:
    from recsys.store import schema

    return current_revision(store) in schema.script(store).get_heads()


@contextmanager
def _alembic_refusal(url: str) -> Iterator[None]:
    """Alembic's refusals (a target it cannot reach from here) as SchemaMismatch, not a traceback; the checks before
    it (:func:`recsys.store.schema.check_known`) say the usual cases in recsys's words. A migration run as a role
    that may not create or alter the tables is StoreDenied."""
    from alembic.util import CommandError

    try:
        yield
    except CommandError as e:
        raise SchemaMismatch(f"the migration tool refused: {e}; nothing was changed (`recsys db current` prints the "
                             "database's revision)") from e
    except DBAPIError as e:
        if (denied := StoreDenied.of(without_password(url), e)) is None:
            raise
        raise denied from e


def refused(e: DBAPIError) -> ValidationFailed | None:
    """The error for a statement the database refused for its values (REFUSED_CLASSES), else None."""
    state = getattr(e.orig, "sqlstate", None)
    if not isinstance(state, str) or state[:2] not in REFUSED_CLASSES:
        return None
    return ValidationFailed(f"the database refused a value ({str(e.orig).splitlines()[0]}); nothing of this request "
                            "was stored. Shorten or correct the value: sent again unchanged, it fails the same way")
