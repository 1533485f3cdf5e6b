"""A new SQLite store is readable by its owner only (every shopper's events, the API key hashes), whatever the
umask; an existing file keeps its mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.store import Store


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_a_new_store_file_is_private(tmp_path: Path) -> None:
    store = Store.open(Settings(home=tmp_path / "home"))
    try:
        with store.session() as s:  # a write: the WAL and its index exist now
            s.connection().exec_driver_sql("CREATE TABLE probe (x INTEGER)")
        files = [p for p in (tmp_path / "home").iterdir() if p.name.startswith("recsys.db")]
        assert {p.name for p in files} >= {"recsys.db", "recsys.db-wal", "recsys.db-shm"}
        assert {p.name: _mode(p) for p in files if p.name.endswith(("db", "-wal", "-shm"))} == {
            "recsys.db": 0o600, "recsys.db-wal": 0o600, "recsys.db-shm": 0o600}
    finally:
        store.engine.dispose()


@pytest.mark.usefixtures("umask_022")
def test_an_existing_store_keeps_its_mode(tmp_path: Path) -> None:
    Store.open(Settings(home=tmp_path / "home")).engine.dispose()
    db = tmp_path / "home" / "recsys.db"
    db.chmod(0o640)
    Store.open(Settings(home=tmp_path / "home")).engine.dispose()
    assert _mode(db) == 0o640
