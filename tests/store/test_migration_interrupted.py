"""A schema upgrade stopped midway on SQLite (a kill, Ctrl-C) leaves the database as it was: its old revision and
nothing of the stopped migration, so the next start migrates cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from recsys.errors import SchemaMismatch
from recsys.store import Store

ROOT = Path(__file__).resolve().parents[2]

KILLER = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from recsys.store import Store

match, how = sys.argv[2], sys.argv[3]

@event.listens_for(Engine, "after_cursor_execute")
def stop(conn, cursor, statement, params, context, executemany):
    if match in " ".join(statement.split()):
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise KeyboardInterrupt

Store(sys.argv[1]).upgrade()
"""


def _tables(store: Store) -> set[str]:
    with store.engine.connect() as c:
        return set(inspect(c).get_table_names())


@pytest.mark.parametrize(("start", "statement", "left_over"), [
    ("0003", "CREATE TRIGGER items_fts_del", "items_fts"),  # 0004 builds the full-text index
    ("0007", "DROP TABLE events", "_alembic_tmp_events"),  # 0008 copies the events table
])
@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_a_stopped_sqlite_upgrade_leaves_the_old_revision_intact(tmp_path: Path, start: str, statement: str,
                                                                 left_over: str, how: str) -> None:
    url = f"sqlite:///{tmp_path / 'recsys.db'}"
    store = Store(url)
    store.upgrade(start)
    with store.engine.begin() as c:
        c.execute(text("INSERT INTO users (external_id, attributes, created_at) "
                       "VALUES ('u1', '{}', CURRENT_TIMESTAMP)"))
    store.dispose()

    done = subprocess.run([sys.executable, "-c", KILLER, url, statement, how], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0, done.stdout + done.stderr
    if how == "interrupt":  # the interrupt itself, not Alembic's clean-up failing on the aborted transaction
        assert done.stderr.strip().splitlines()[-1] == "KeyboardInterrupt", done.stderr[-2000:]

    store = Store(url)
    assert store.current_revision() == start
    assert left_over not in _tables(store)
    store.upgrade()
    assert store.at_head()
    with store.engine.connect() as c:
        assert c.execute(text("SELECT external_id FROM users")).scalars().all() == ["u1"]
    store.dispose()


def test_an_object_left_by_an_older_stopped_upgrade_is_named_not_called_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recsys.db'}"
    store = Store(url)
    store.upgrade("0003")
    with store.engine.begin() as c:  # what an upgrade stopped by an older recsys left: 0004's table, at 0003
        c.execute(text("CREATE VIRTUAL TABLE items_fts USING fts5(title)"))
    with pytest.raises(SchemaMismatch) as e:
        store.upgrade()
    assert "table items_fts already exists" in e.value.message
    assert "still at 0003, unchanged" in e.value.message
    assert "unreachable" not in e.value.message
    assert store.current_revision() == "0003"
    store.dispose()


def test_upgrading_an_existing_store_says_so_and_how_to_take_it_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    with caplog.at_level("WARNING", logger="recsys.store.db"):
        fresh.upgrade()  # a new store: nothing to say
    assert not caplog.records
    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    old.upgrade("0007")
    with caplog.at_level("WARNING", logger="recsys.store.db"):
        old.upgrade()
    said = caplog.records[-1].getMessage()
    from recsys.store.schema import known_revisions

    assert f"from revision 0007 to {known_revisions(old)[-1]}" in said and "recsys db downgrade 0007" in said
    fresh.dispose()
    old.dispose()
