"""A schema upgrade that cannot run says why in one line, with what to do, and changes nothing (migrations audit):
orphan events in a SQLite store before migration 0008, a read-only PostgreSQL (a replica) behind the code, and a
server timeout that cancels a migration's statement. Also: the serving cache key's index (0012) and `alembic check`
agreeing with the models."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from recsys.errors import SchemaBehind, SchemaMismatch
from recsys.store import Store
from recsys.store.queries import HISTORY_MARK, REQUEST_STATE, history_mark, request_state
from tests.conftest import PG_URL, _pg_database

ROOT = Path(__file__).resolve().parents[2]
ORPHANS = "user_id NOT IN (SELECT id FROM users) OR item_id NOT IN (SELECT id FROM items)"


def _orphaned_store(path: Path) -> Store:
    """A store at 0007 holding two events, one of them orphaned by a client with foreign keys off."""
    store = Store(f"sqlite:///{path}")
    store.upgrade("0007")
    con = sqlite3.connect(path)  # Python's sqlite3 module: foreign keys off, as the sqlite3 shell
    con.executescript(
        "INSERT INTO items (id, external_id, title, description, in_stock, attributes, hidden, deleted, content_hash, "
        "created_at, updated_at) VALUES (1, 'a', 'A', '', 1, '{}', 0, 0, 'h', '2026-01-01', '2026-01-01'), "
        "(2, 'b', 'B', '', 1, '{}', 0, 0, 'h', '2026-01-01', '2026-01-01');"
        "INSERT INTO users (id, external_id, attributes, created_at) VALUES (1, 'u1', '{}', '2026-01-01');"
        "INSERT INTO events (user_id, item_id, type, ts, created_at) VALUES (1, 1, 'view', '2026-01-01', "
        "'2026-01-01'), (1, 2, 'view', '2026-01-02', '2026-01-02');"
        "DELETE FROM items WHERE id = 2;")
    con.commit()
    con.close()
    return store


def test_orphan_events_stop_the_upgrade_in_one_line_and_the_sql_it_names_clears_the_way(tmp_path: Path) -> None:
    path = tmp_path / "recsys.db"
    store = _orphaned_store(path)
    try:
        with pytest.raises(SchemaMismatch) as refused:
            store.upgrade()
        said = refused.value.message
        assert "\n" not in said and "1 event references a user or an item that no longer exists" in said, said
        assert f'"SELECT * FROM events WHERE {ORPHANS}"' in said and "nothing was changed" in said, said
        assert store.current_revision() == "0007"
        with store.reading() as c:
            assert c.execute(text("SELECT count(*) FROM events")).scalar_one() == 2  # nothing lost
        delete = re.search(r'`sqlite3 (\S+) "(DELETE FROM events WHERE [^"]+)"`', said)
        assert delete is not None and delete.group(1) == str(path), said
        con = sqlite3.connect(path)
        con.execute(delete.group(2))
        con.commit()
        con.close()
        store.upgrade()
        assert store.at_head()
        with store.reading() as c:
            assert c.execute(text("SELECT id, item_id FROM events")).all() == [(1, 1)]
    finally:
        store.dispose()


def test_orphan_events_stop_the_downgrade_below_0008_too(tmp_path: Path) -> None:
    path = tmp_path / "recsys.db"
    store = Store(f"sqlite:///{path}")
    try:
        store.upgrade()
        con = sqlite3.connect(path)  # foreign keys off: an event of no item
        con.execute("INSERT INTO users (id, external_id, attributes, created_at) VALUES (1, 'u', '{}', '2026-01-01')")
        con.execute("INSERT INTO events (user_id, item_id, type, ts, created_at) "
                    "VALUES (1, 7, 'view', '2026-01-01', '2026-01-01')")
        con.commit()
        con.close()
        with pytest.raises(SchemaMismatch, match="run the downgrade again"):
            store.downgrade("0007")
        assert store.at_head()
    finally:
        store.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    yield from _pg_database()


def _alter_database(url: str, setting: str) -> None:
    assert PG_URL
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")  # not the database altered: it may be read-only
    with admin.connect() as c:
        c.execute(text(f'ALTER DATABASE "{make_url(url).database}" SET {setting}'))
    admin.dispose()


@pytest.mark.postgres
def test_a_read_only_database_behind_the_code_says_upgrade_the_primary_and_one_at_head_still_serves(
        pg_url: str) -> None:
    Store(pg_url).upgrade("0007")
    _alter_database(pg_url, "default_transaction_read_only = on")
    store = Store(pg_url)
    try:
        with pytest.raises(SchemaBehind) as refused:  # a StoreUnavailable: a server waits for the primary's upgrade
            store.upgrade()
        said = refused.value.message
        assert "from revision 0007 to" in said and "read-only" in said and "writable primary" in said, said
        assert "nothing was changed" in said and store.current_revision() == "0007"
    finally:
        store.dispose()
    _alter_database(pg_url, "default_transaction_read_only = off")
    Store(pg_url).upgrade()
    _alter_database(pg_url, "default_transaction_read_only = on")
    replica = Store(pg_url)
    try:
        replica.upgrade()  # at head: nothing to write, nothing refused
        with replica.reading() as c:
            assert request_state(c, "nobody")[0] == (0, None)
    finally:
        replica.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("setting", ["statement_timeout", "lock_timeout"])
def test_a_migration_cancelled_by_a_server_timeout_says_so_and_how_to_run_it(pg_url: str, setting: str) -> None:
    Store(pg_url).upgrade("0003")
    _alter_database(pg_url, f"{setting} = '200ms'")
    locker = create_engine(pg_url)
    store = Store(pg_url)
    try:
        with locker.connect() as held:  # 0004 must alter items: its statement waits until the server's timeout
            held.execute(text("SET lock_timeout = 0; SET statement_timeout = 0"))
            held.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(SchemaMismatch) as refused:
                store.upgrade()
            held.rollback()
        said = refused.value.message
        assert f"from revision 0003 to {_head(store)} was cancelled by the server's {setting}" in said, said
        assert "nothing was changed" in said and f"?options=-c%20{setting}%3D0' recsys db upgrade" in said, said
        assert "Retry shortly" not in said and store.current_revision() == "0003"
    finally:
        store.dispose()
        locker.dispose()
    fixed = Store(f"{pg_url}?options=-c%20{setting}%3D0")  # the way the message gives
    try:
        fixed.upgrade()
        assert fixed.at_head()
    finally:
        fixed.dispose()


@pytest.mark.postgres
def test_a_migration_cancelled_by_hand_is_no_timeout_to_turn_off(pg_url: str) -> None:
    """pg_cancel_backend gives the same SQLSTATE as statement_timeout: no setting is to blame, a retry is the way."""
    import threading

    from recsys.errors import StoreError

    Store(pg_url).upgrade("0003")
    _alter_database(pg_url, "lock_timeout = '60s'")  # a test that never hangs: the cancel is what it waits for
    locker, admin = create_engine(pg_url), create_engine(pg_url, isolation_level="AUTOCOMMIT")
    store = Store(pg_url)

    def cancel_the_waiting_migration() -> None:
        with admin.connect() as c:
            for _ in range(100_000):  # until the migration waits on the lock (then a timeout ends it: it fails)
                if c.execute(text("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = "
                                  "current_database() AND wait_event_type = 'Lock'")).first():
                    return

    try:
        with locker.connect() as held:
            held.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
            canceller = threading.Thread(target=cancel_the_waiting_migration)
            canceller.start()
            with pytest.raises(StoreError) as refused:
                store.upgrade()
            canceller.join()
            held.rollback()
        said = refused.value.message
        assert "statement_timeout" not in said and "Retry shortly" in said and store.current_revision() == "0003"
    finally:
        store.dispose()
        locker.dispose()
        admin.dispose()


def _head(store: Store) -> str:
    from recsys.store.schema import known_revisions

    return known_revisions(store)[-1]


def test_the_cache_key_reads_a_users_events_from_one_covering_index(db_url: str) -> None:
    """REQUEST_STATE and HISTORY_MARK (every request's cache key) are answered from ix_events_user_type_id alone:
    on PostgreSQL ix_events_user_ts holds no id, and on SQLite HISTORY_MARK reads the type. 0011 has no such index."""
    store = Store(db_url)
    try:
        store.upgrade()
        store.engine.dispose()  # SQLite: a pooled connection opened before the upgrade lists the old schema's indexes
        assert "ix_events_user_type_id" in {ix["name"] for ix in inspect(store.engine).get_indexes("events")}
        pg = store.dialect == "postgresql"
        with store.engine.begin() as c:
            if pg:  # the planner's choice on a few rows is a sequential scan: ask for the index path it has
                c.execute(text("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"))
            for statement in (REQUEST_STATE, HISTORY_MARK):
                sql = str(statement.params(user_id="u").compile(dialect=store.engine.dialect,
                                                                compile_kwargs={"literal_binds": True}))
                plan = " ".join(str(r[-1] if not pg else r[0]) for r in c.execute(
                    text(("EXPLAIN " if pg else "EXPLAIN QUERY PLAN ") + sql.replace("%%", "%"))))
                assert ("Index Only Scan using ix_events_user_type_id" if pg else
                        "COVERING INDEX ix_events_user_type_id") in plan or (
                    not pg and statement is REQUEST_STATE and "COVERING INDEX ix_events_user_ts" in plan), plan
            assert history_mark(c, "u") == (0, None)
        store.downgrade("0011")
        store.engine.dispose()
        assert "ix_events_user_type_id" not in {ix["name"] for ix in inspect(store.engine).get_indexes("events")}
    finally:
        store.dispose()


def test_alembic_check_finds_the_models_and_a_migrated_database_equal(db_url: str) -> None:
    """migrations/env.py leaves out the lexical index that the migrations make by raw SQL (items_fts and its shadow
    tables, item_search): `alembic check` passes on a database at head, and autogenerate proposes no drop."""
    from alembic import command

    store = Store(db_url)
    try:
        store.upgrade()
        tables = set(inspect(store.engine).get_table_names())
        assert ("items_fts" if store.dialect == "sqlite" else "item_search") in tables
        command.check(store.alembic_config())  # raises AutoGenerateDiffsDetected on any difference
    finally:
        store.dispose()


def test_a_new_revision_is_numbered_after_the_head(tmp_path: Path) -> None:
    """alembic.ini's file_template and env.py's numbering: `alembic revision --autogenerate -m name` writes
    versions/NNNN_name.py with the next number, as the existing files are named; it finds nothing to change."""
    from alembic import command
    from alembic.config import Config

    scripts = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    store = Store(f"sqlite:///{tmp_path / 'recsys.db'}")
    try:
        store.upgrade()
        head = _head(store)
        cfg = Config(str(ROOT / "alembic.ini"))
        cfg.set_main_option("script_location", str(scripts))
        cfg.set_main_option("sqlalchemy.url", store.url)
        cfg.attributes["engine"] = store.engine
        command.revision(cfg, message="probe change", autogenerate=True)
        written = scripts / "versions" / f"{int(head) + 1:04d}_probe_change.py"
        assert written.exists(), sorted(p.name for p in (scripts / "versions").iterdir())
        body = written.read_text()
        assert f"down_revision = '{head}'" in body and "drop_table" not in body and "drop_index" not in body
    finally:
        store.dispose()
