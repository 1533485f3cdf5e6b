from __future__ import annotations

from sqlalchemy import inspect

from recsys.store import Store


def test_downgrade_base_then_upgrade_head_round_trips(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    tables = set(inspect(store.engine).get_table_names())
    assert {"items", "item_media", "users", "events", "artifacts", "item_tags", "api_keys"} <= tables
    store.downgrade("base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    store.upgrade()
    assert store.at_head()
    assert set(inspect(store.engine).get_table_names()) == tables
    store.dispose()


def test_dead_database_gives_a_clear_error() -> None:
    import pytest

    from recsys.errors import StoreUnavailable

    store = Store("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable) as exc:
        store.upgrade()
    assert "RECSYS_DATABASE_URL" in str(exc.value)


def test_events_copied_with_autoincrement_keep_every_row_and_the_next_id(tmp_path: object) -> None:
    """Migration 0008 copies SQLite's events table (AUTOINCREMENT cannot be added in place): rows, ids and indexes
    survive, and the next id is above every id ever stored."""
    from pathlib import Path

    from sqlalchemy import text

    store = Store(f"sqlite:///{Path(str(tmp_path)) / 'm.db'}")
    store.upgrade("0007")
    with store.engine.begin() as c:
        c.execute(text("INSERT INTO users (id, external_id, attributes, created_at) "
                       "VALUES (1, 'u', '{}', '2024-01-01')"))
        c.execute(text("INSERT INTO items (id, external_id, title, description, in_stock, attributes, hidden, "
                       "deleted, content_hash, created_at, updated_at) "
                       "VALUES (1, 'i', 't', '', 1, '{}', 0, 0, '', '2024-01-01', '2024-01-01')"))
        for i in (1, 2, 3):
            c.execute(text("INSERT INTO events (id, user_id, item_id, type, ts, created_at) "
                           f"VALUES ({i}, 1, 1, 'view', '2024-01-0{i}', '2024-01-01')"))
        c.execute(text("DELETE FROM events WHERE id = 3"))
    store.upgrade()
    with store.engine.begin() as c:
        assert [r[0] for r in c.execute(text("SELECT id FROM events ORDER BY id"))] == [1, 2]
        c.execute(text("INSERT INTO events (user_id, item_id, type, ts, created_at) "
                       "VALUES (1, 1, 'view', '2024-02-01', '2024-01-01')"))
        assert c.execute(text("SELECT max(id) FROM events")).scalar_one() == 3  # 3 was freed before the copy
        c.execute(text("DELETE FROM events WHERE id = 3"))
        c.execute(text("INSERT INTO events (user_id, item_id, type, ts, created_at) "
                       "VALUES (1, 1, 'view', '2024-02-02', '2024-01-01')"))
        assert c.execute(text("SELECT max(id) FROM events")).scalar_one() == 4  # never 3 again
    assert {ix["name"] for ix in inspect(store.engine).get_indexes("events")} >= {"ix_events_user_ts", "ix_events_ts"}
    store.dispose()


_UPGRADE_AT = """
import sys, time
from recsys.store import Store
store = Store(sys.argv[1])
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
store.upgrade()
print(store.current_revision())
"""


def test_processes_starting_together_take_turns_at_the_migration(db_url: str) -> None:
    """Replicas (or `recsys serve` beside `recsys import`) that start together on a new database each migrate on
    first use: the one that waited finds the schema at head instead of failing on the other's tables."""
    import subprocess
    import sys
    import time

    start = time.time() + 6  # every process imported and waiting by then, so they all begin at once
    procs = [subprocess.Popen([sys.executable, "-c", _UPGRADE_AT, db_url, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-500:] for _, e in outs]
    store = Store(db_url)
    assert store.at_head() and {o.strip() for o, _ in outs} == {store.current_revision()}
    store.dispose()


def test_a_database_migrated_by_a_newer_recsys_is_refused_unchanged(db_url: str) -> None:
    import pytest
    from sqlalchemy import text

    from recsys.errors import SchemaMismatch

    store = Store(db_url)
    store.upgrade()
    with store.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for step in (store.upgrade, store.downgrade, lambda: Store.open(_settings(db_url))):
        with pytest.raises(SchemaMismatch, match="9999, which this recsys does not know.*newer recsys"):
            step()
    assert store.current_revision() == "9999"
    with store.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '0009'"))
    with pytest.raises(SchemaMismatch, match="no schema revision '0042'"):
        store.upgrade("0042")
    store.dispose()


def _settings(db_url: str) -> object:
    from recsys.config import Settings

    return Settings(database_url=db_url)


def test_a_downgrade_that_drops_stored_data_names_it_and_needs_yes(tmp_path: object, monkeypatch: object) -> None:
    from pathlib import Path

    import pytest
    from sqlalchemy import text
    from typer.testing import CliRunner

    from recsys.cli import app
    from recsys.config import get_settings
    from recsys.errors import ValidationFailed
    from recsys.store.tables import ServedList

    home = Path(str(tmp_path))
    monkeypatch.setenv("RECSYS_HOME", str(home))  # type: ignore[attr-defined]
    get_settings.cache_clear()  # the CLI reads settings through this cache: not another test's home
    store = Store(f"sqlite:///{home / 'recsys.db'}")
    store.upgrade()
    head = store.current_revision()
    runner = CliRunner()
    assert runner.invoke(app, ["db", "downgrade", "0004"]).exit_code == 0  # nothing stored: nothing to lose
    store.upgrade()
    with store.engine.begin() as c:
        c.execute(text("INSERT INTO users (external_id, attributes, created_at) VALUES ('u', '{}', '2024-01-01')"))
    with store.session() as s:
        s.add(ServedList(id="r1", source="recommendations", user_id="u", item_ids=["i"], size=1))
    refused = runner.invoke(app, ["db", "downgrade", "0004"])
    assert refused.exit_code != 0 and "table served_lists (1 row)" in str(refused.exception or refused.output)
    assert store.current_revision() == head
    done = runner.invoke(app, ["db", "downgrade", "0004", "--yes"])
    assert done.exit_code == 0 and "dropped table served_lists" in done.output
    assert store.current_revision() == "0004"
    with pytest.raises(ValidationFailed, match=r"to base drops stored data: table users \(1 row\)"):
        runner.invoke(app, ["db", "downgrade"], catch_exceptions=False)  # base: every table
    store.dispose()
    get_settings.cache_clear()
