"""Shared fixtures: a fresh store on SQLite, and on PostgreSQL when RECSYS_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from recsys.config import Settings
from recsys.store import Store

PG_URL = os.environ.get("RECSYS_TEST_POSTGRES_URL")
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: the browser tests' sync Playwright keeps an event loop running in the
    main thread for the rest of the session, where ``asyncio.run`` refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _pg_database() -> Iterator[str]:
    """A throwaway database on the test server, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    assert PG_URL
    name = f"recsys_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'recsys.db'}"
        return
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    yield from _pg_database()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.upgrade()
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'recsys.db'}")
    s.upgrade()
    yield s
    s.dispose()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data directory of the test's own as RECSYS_HOME (settings read afresh before and after); modules with a
    built store define their own ``home``."""
    from recsys.config import get_settings

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The real ``recsys.cli.main()`` run with ``args`` (settings read afresh from the environment, before and
    after): its exit status and stderr."""
    code, _, err = run_cli(monkeypatch, capsys, *args)
    return code, err


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """:func:`run_main` with stdout too: exit status, stdout, stderr."""
    import sys

    from recsys import cli
    from recsys.config import get_settings

    monkeypatch.setattr(sys, "argv", ["recsys", *args])
    if any(g.name == "items" and any(c.name == "describe" for c in g.typer_instance.registered_commands)
           for g in cli.app.registered_groups):  # registered once per process, as main() does
        monkeypatch.setattr(cli, "_register_commands", lambda: None)
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as ex:
            cli.main()
    finally:
        get_settings.cache_clear()
    out, err = capsys.readouterr()
    return int(ex.value.code or 0), out, err
