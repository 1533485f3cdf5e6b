"""A PostgreSQL role lacking a privilege (SQLSTATE 42501) is one ``error [store_denied]`` line naming the database,
the role, what was refused and the GRANT that fixes it, exit 2: never a traceback (import, items hide, stats, db)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from recsys.config import Settings
from recsys.store import Store
from recsys.store.importers import run_import
from tests.conftest import run_main

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no roles")
    return db_url


@pytest.fixture
def role(pg_url: str, store: Store) -> Iterator[str]:
    """A role that may log in and has no privilege on the store's tables (the test grants what it needs)."""
    name = f"recsys_t_role_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE ROLE "{name}" LOGIN'))
    try:
        yield name
    finally:
        with admin.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": name})
            c.execute(text(f'DROP OWNED BY "{name}"'))  # its grants on this database's tables
            c.execute(text(f'DROP ROLE "{name}"'))
        admin.dispose()


def _grant(pg_url: str, sql: str) -> None:
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(sql))
    admin.dispose()


def _main_as(role: str, pg_url: str, home: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The real ``recsys.cli.main()`` run as ``role``: its exit status and stderr."""
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_DATABASE_URL", make_url(pg_url).set(username=role, password=None)
                       .render_as_string(hide_password=False))
    return run_main(monkeypatch, capsys, *args)


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], err
    assert errors[0].startswith("error [store_denied]: "), err
    return errors[0]


@pytest.mark.parametrize(("args", "privilege", "table"), [
    (("import", "items", "{file}"), "an INSERT", "items"),
    (("items", "hide", "a1"), "an UPDATE", "items"),
])
def test_a_role_that_may_only_read_is_told_what_it_lacks(role: str, pg_url: str, store: Store, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                                          privilege: str, table: str) -> None:
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\na1,One\n")
    run_import(store, "items", f, settings=Settings(home=tmp_path / "home"))  # as the owner
    f.write_text("item_id,title\na2,Two\n")
    _grant(pg_url, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    code, err = _main_as(role, pg_url, tmp_path / "home", monkeypatch, capsys, *[a.format(file=f) for a in args])
    line = _one_error_line(err)
    assert code == 2
    assert f"refused role {role} {privilege} (permission denied for table {table})" in line
    assert f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}" in line
    assert f"{role}@" in line and make_url(pg_url).database in line  # the database, as the role logs in to it
    if args[0] == "import":
        assert f"{f}: nothing was imported: " in line


def test_a_role_without_privileges_cannot_even_read_the_schema_revision(role: str, pg_url: str, store: Store,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main_as(role, pg_url, tmp_path / "home", monkeypatch, capsys, "stats")
    assert code == 2
    assert f"refused role {role} a SELECT (permission denied for table alembic_version)" in _one_error_line(err)


def test_a_migration_run_by_a_role_that_does_not_own_the_tables(role: str, pg_url: str, store: Store,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    store.downgrade("0010")
    _grant(pg_url, f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"')
    code, err = _main_as(role, pg_url, tmp_path / "home", monkeypatch, capsys, "db", "upgrade")
    line = _one_error_line(err)
    assert code == 2 and f"refused role {role} a CREATE (permission denied for table items)" in line
    assert "run the migration (`recsys db upgrade` or `downgrade`) as the owner of the database's tables" in line
    assert store.current_revision() == "0010"
