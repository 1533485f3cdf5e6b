"""A database whose recsys tables exist but whose schema revision is missing (``alembic_version`` dropped or emptied:
a restore that left it out) is refused by every command with one message saying what is wrong and what to do, on
SQLite and PostgreSQL; ``recsys db stamp`` records the revision once the tables are shown to be that revision's. An
upgrade to an older revision, or a downgrade to a newer one, is refused in words, not a traceback or a no-op."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import Settings
from recsys.errors import SchemaMismatch
from recsys.store import Store

RECSYS = str(Path(sys.executable).parent / "recsys")
UNSTAMPED = r"has recsys tables \(api_keys, artifacts, .*\) but no schema revision: its alembic_version table is " \
            r"missing or empty.*nothing was changed"


def _unstamped(db_url: str, how: str) -> tuple[Store, str]:
    """A store at head whose revision stamp is gone (``how``: the table dropped, or its row deleted)."""
    store = Store(db_url)
    store.upgrade()
    head = store.current_revision()
    assert head is not None
    with store.engine.begin() as c:
        c.execute(text("DROP TABLE alembic_version" if how == "dropped" else "DELETE FROM alembic_version"))
    assert store.current_revision() is None
    return store, head


def _recsys(db_url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECSYS_DATABASE_URL": db_url, "RECSYS_HOME": str(home)}
    return subprocess.run([RECSYS, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", ["dropped", "emptied"])
def test_tables_without_a_revision_are_refused_saying_what_to_do(db_url: str, how: str) -> None:
    store, head = _unstamped(db_url, how)
    try:
        for step in (store.upgrade, store.downgrade, lambda: Store.open(Settings(database_url=db_url)).dispose()):
            with pytest.raises(SchemaMismatch, match=UNSTAMPED) as e:
                step()
            # the tables are head's: the message names it and the command that records it
            assert f"{head} (head)" in e.value.message and "`recsys db stamp" in e.value.message
        assert store.current_revision() is None  # nothing was changed
    finally:
        store.dispose()


def test_every_command_says_it_in_one_line_without_a_traceback(db_url: str, tmp_path: Path) -> None:
    store, head = _unstamped(db_url, "dropped")
    store.dispose()
    for args in (["db", "current"], ["stats"], ["db", "upgrade"]):
        r = _recsys(db_url, tmp_path, *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error [store_schema]: the database "), (args, lines)
        assert "but no schema revision" in lines[0] and "`recsys db stamp" in lines[0] and r.stdout == ""
    r = _recsys(db_url, tmp_path, "db", "stamp", "head")
    assert r.returncode == 0 and r.stdout.strip() == f"database stamped at {head}", r.stderr[-2000:]
    assert _recsys(db_url, tmp_path, "db", "current").stdout.strip() == head
    assert _recsys(db_url, tmp_path, "stats").returncode == 0


def test_a_stamp_is_refused_unless_the_tables_are_that_revisions(db_url: str) -> None:
    store, head = _unstamped(db_url, "emptied")
    try:
        with pytest.raises(SchemaMismatch, match=r"not those of revision 0005 \(table item_descriptions not "
                                                 r"expected.*nothing was changed"):
            store.stamp("0005")
        with pytest.raises(SchemaMismatch, match="no schema revision '0042'"):
            store.stamp("0042")
        assert store.current_revision() is None
        assert store.stamp() == head and store.current_revision() == head and store.at_head()
        with pytest.raises(SchemaMismatch, match=f"is at revision {head}: `recsys db stamp` only records"):
            store.stamp(head)
        store.upgrade()  # at head: nothing to do
    finally:
        store.dispose()
    empty = Store(db_url.replace("recsys.db", "empty.db")) if db_url.startswith("sqlite") else None
    if empty is not None:
        with pytest.raises(SchemaMismatch, match="no recsys tables, so there is nothing to stamp"):
            empty.stamp()
        empty.dispose()


def test_an_older_sqlite_store_is_matched_to_its_own_revision(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    store.upgrade("0005")
    with store.engine.begin() as c:
        c.execute(text("DROP TABLE alembic_version"))
    with pytest.raises(SchemaMismatch, match=r"are those of revision 0005: .*`recsys db stamp 0005`"):
        store.upgrade()
    assert store.stamp("0005") == "0005"
    store.upgrade()
    assert store.at_head()
    store.dispose()


def test_the_wrong_direction_is_refused_in_words(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade("0005")
    try:
        with pytest.raises(SchemaMismatch, match=r"at revision 0005, and 0010 is newer: `recsys db downgrade` only "
                                                 r"moves back\. To go forward, run `recsys db upgrade 0010`"):
            store.downgrade("0010")
        with pytest.raises(SchemaMismatch, match=r"at revision 0005, and 0003 is older: `recsys db upgrade` only "
                                                 r"moves forward\. To go back, run `recsys db downgrade 0003`"):
            store.upgrade("0003")
        with pytest.raises(SchemaMismatch, match="head is newer"):
            store.downgrade("head")
        with pytest.raises(SchemaMismatch, match="base is older"):
            store.upgrade("base")
        assert store.current_revision() == "0005"
        store.upgrade("0005")  # where it is: nothing to do, either way
        store.downgrade("0005")
        assert store.current_revision() == "0005"
    finally:
        store.dispose()


def test_the_db_commands_say_the_direction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.config import get_settings

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    get_settings.cache_clear()  # the CLI reads settings through this cache: never leave it holding this home
    store = Store(f"sqlite:///{tmp_path / 'recsys.db'}")
    store.upgrade("0005")
    runner = CliRunner()
    try:
        for args, said in ((["db", "downgrade", "0010"], "0010 is newer"),
                           (["db", "upgrade", "0003"], "0003 is older")):
            r = runner.invoke(app, args)
            assert r.exit_code != 0 and isinstance(r.exception, SchemaMismatch) and said in r.exception.message
        assert store.current_revision() == "0005"
    finally:
        store.dispose()
        get_settings.cache_clear()


def test_alembics_own_refusals_are_schema_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic import command
    from alembic.util import CommandError

    def refuse(*args: object, **kwargs: object) -> None:
        raise CommandError("Destination 0007 is not a valid downgrade target from current head(s)")

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.upgrade("0005")
    monkeypatch.setattr(command, "downgrade", refuse)
    with pytest.raises(SchemaMismatch, match="the migration tool refused: Destination 0007"):
        store.downgrade("0003")
    store.dispose()


def test_a_first_migration_under_way_elsewhere_is_waited_for(tmp_path: Path) -> None:
    # SQLite makes the tables before the stamp: a process checking meanwhile (`recsys serve` beside the first
    # `recsys import`) must wait for the migration lock and read the stamp then, not call the store unstamped
    import threading
    import time

    from alembic import command

    from recsys.store.schema import check_known, migration_lock

    url = f"sqlite:///{tmp_path / 'race.db'}"
    migrating, other = _unstamped(url, "dropped")[0], Store(url)
    locked = threading.Event()

    def finish_the_migration() -> None:
        with migration_lock(migrating):
            locked.set()
            time.sleep(0.5)
            command.stamp(migrating.alembic_config(), "head")

    t = threading.Thread(target=finish_the_migration)
    t.start()
    locked.wait(10)
    start = time.monotonic()
    check_known(other, None)
    assert time.monotonic() - start > 0.3
    t.join()
    migrating.dispose()
    other.dispose()


def test_serve_on_a_store_whose_migration_fails_refuses_in_one_line_before_the_banner(tmp_path: Path) -> None:
    # a store left at 0010 holding an object of 0011 (an older, interrupted upgrade): `recsys stats` said it in one
    # line, `recsys serve` printed its banner and then the app's start-up traceback
    db_url = f"sqlite:///{tmp_path / 'recsys.db'}"
    store = Store(db_url)
    store.upgrade()
    store.downgrade("0010")
    store.dispose()
    with sqlite3.connect(tmp_path / "recsys.db") as db:
        db.execute("CREATE TRIGGER items_filters_upd AFTER UPDATE OF title ON items BEGIN SELECT 1; END")
    r = _recsys(db_url, tmp_path, "serve", "--port", "0", "--no-auth")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "recsys explorer" not in r.stdout + r.stderr, \
        r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error [store_schema]: "), r.stderr[-2000:]
