"""A read-only SQLite store (a read-only mount): writes answer ``store_read_only``, which no retry heals (it was 503
``store_down`` "unreachable; retry shortly"), and a cleanly closed store there (no -wal) is opened read-only and
immutable, so it can be read at all (SQLite must otherwise create its -shm file even to read)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from recsys.api.errors import install, public_message
from recsys.errors import DiskFull, StoreReadOnly, StoreUnavailable
from recsys.store import Store
from recsys.store import sqlite as sqlite_mod
from recsys.store.tables import Item


def test_a_read_only_file_is_store_read_only_not_a_server_to_retry(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'recsys.db'}")
    e = store.unavailable(OperationalError("INSERT", {}, Exception("attempt to write a readonly database")))
    store.dispose()
    assert isinstance(e, StoreReadOnly) and isinstance(e, StoreUnavailable)
    assert (e.code, e.status) == ("store_read_only", 500) and "writable" in e.message and "retry" not in e.message
    said = public_message(e)
    assert "read-only" in said and "retrying will not help" in said and str(tmp_path) not in said


def test_the_api_answers_it_without_retry_after() -> None:
    app = FastAPI()
    install(app)

    @app.post("/w")
    def w() -> None:
        raise StoreReadOnly("the database file /x/recsys.db is read-only")

    r = TestClient(app, raise_server_exceptions=False).post("/w")
    assert r.status_code == 500 and r.json()["code"] == "store_read_only" and "retry-after" not in r.headers
    assert "unreachable" not in r.json()["detail"] and "/x/" not in r.json()["detail"]


def test_with_no_byte_left_a_read_is_not_said_to_have_rolled_back_a_write(tmp_path: Path) -> None:
    e = DiskFull.sqlite(tmp_path / "recsys.db", "disk I/O error")
    assert "nothing was written to recsys.db" in e.message


def test_read_only_uri_only_for_a_file_without_wal_in_an_unwritable_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "recsys.db"
    assert sqlite_mod.read_only_uri(str(db)) is None  # no file yet
    db.write_bytes(b"")
    assert sqlite_mod.read_only_uri(str(db)) is None  # a writable directory
    monkeypatch.setattr(sqlite_mod.os, "access", lambda p, mode: False)
    uri = sqlite_mod.read_only_uri(str(db))
    assert uri is not None and uri.startswith("file:") and uri.endswith("?mode=ro&immutable=1")
    Path(f"{db}-wal").write_bytes(b"")
    assert sqlite_mod.read_only_uri(str(db)) is None  # immutable would ignore the WAL's commits
    assert sqlite_mod.read_only_uri(":memory:") is None


def test_a_store_in_an_unwritable_directory_is_read_and_refuses_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'recsys.db'}"
    store = Store(url)
    store.upgrade()
    with store.session() as s:
        s.add(Item(external_id="i1", title="red hat", content_hash="h1"))
    store.dispose()
    assert not Path(f"{tmp_path / 'recsys.db'}-wal").exists()  # closed cleanly, as a store copied to a mount is
    real = os.access
    monkeypatch.setattr(sqlite_mod.os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    ro = Store(url)
    try:
        assert ro.at_head()
        with ro.session() as s:
            assert s.scalars(select(Item.external_id)).all() == ["i1"]
        with pytest.raises(StoreReadOnly, match="read-only"), ro.session() as s:
            s.add(Item(external_id="i2", title="blue hat", content_hash="h2"))
    finally:
        ro.dispose()


def test_a_link_to_a_writable_store_is_opened_as_usual(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Judged on the link's target, where SQLite puts its -wal and -shm: immutable there would refuse every write
    and read a file another process keeps writing as if it never changed."""
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    (real / "recsys.db").write_bytes(b"")
    (links / "recsys.db").symlink_to(real / "recsys.db")
    real_access = sqlite_mod.os.access
    monkeypatch.setattr(sqlite_mod.os, "access", lambda p, mode: Path(p) != links and real_access(p, mode))
    assert sqlite_mod.read_only_uri(str(links / "recsys.db")) is None
