"""A SQLite file that is not a database, or a corrupt one: one message saying so and what to do, on every path
(opening, an ORM session, a connection read and the event loop's reads), never a driver traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from recsys.errors import StoreDamaged, StoreUnavailable
from recsys.store import Item, Store
from recsys.store.queries import USER_EVENTS
from tests.conftest import run_async


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "recsys.db"
    db.write_bytes(bytes(range(256)) * 400)
    with pytest.raises(StoreDamaged, match=r"recsys.db is damaged .*file is not a database.*Restore it"):
        Store(f"sqlite:///{db}").upgrade()
    assert db.read_bytes() == bytes(range(256)) * 400  # nothing written


def test_a_corrupt_database(tmp_path: Path) -> None:
    db = tmp_path / "recsys.db"
    store = Store(f"sqlite:///{db}")
    store.upgrade()
    with store.session() as s:
        s.execute(Item.__table__.insert(), [{"external_id": f"i{i:05d}", "title": "x" * 200, "content_hash": "h",
                                             "attributes": {}} for i in range(3000)])
    store.dispose()
    data = bytearray(db.read_bytes())
    data[8192:-8192] = b"\xa5" * (len(data) - 16384)  # the table's pages; the header and schema stay readable
    db.write_bytes(bytes(data))
    store = Store(f"sqlite:///{db}")
    with pytest.raises(StoreDamaged, match="disk image is malformed"), store.session() as s:
        s.execute(select(Item.title)).all()
    with pytest.raises(StoreDamaged), store.reading() as c:
        c.execute(select(Item.title)).all()
    with pytest.raises(StoreDamaged):
        run_async(store.fetch(USER_EVENTS, {"user_id": "u1"}))
    store.dispose()


def test_a_lost_database_beside_built_generations_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SQLite makes a missing file anew: where generations were built from one, that is said (a moved file, or a
    typo in the URL), instead of serving an index over an empty store without a word."""
    from recsys.config import Settings

    home = tmp_path / "home"
    (home / "index").mkdir(parents=True)
    Store.open(Settings(home=home)).dispose()
    assert "does not exist, but" in caplog.text and "RECSYS_DATABASE_URL" in caplog.text
    caplog.clear()
    Store.open(Settings(home=home)).dispose()  # it exists now: nothing to say
    fresh = tmp_path / "fresh"
    Store.open(Settings(home=fresh)).dispose()  # a first import's new home: nothing to say
    assert "does not exist" not in caplog.text


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_file_removed_under_a_running_process_refuses_writes(tmp_path: Path, how: str) -> None:
    """Pooled connections keep the unlinked file: without the check, writes were acknowledged and then lost with
    it, and the readiness ping kept saying the store was fine."""
    db = tmp_path / "recsys.db"
    store = Store(f"sqlite:///{db}")
    store.upgrade()
    with store.session() as s:  # the file this process works on
        s.execute(Item.__table__.insert(), [{"external_id": "i1", "content_hash": "h", "attributes": {}}])
    assert store.ping()
    db.rename(tmp_path / "moved.db")
    if how == "replaced":
        db.write_bytes((tmp_path / "moved.db").read_bytes())
    assert not store.ping()
    with pytest.raises(StoreUnavailable, match=f"was {how} while this process was running.*restart"), \
            store.session() as s:
        s.execute(Item.__table__.insert(), [{"external_id": "i2", "content_hash": "h", "attributes": {}}])
    store.dispose()
    fresh = Store(f"sqlite:///{db}") if how == "replaced" else None  # a restarted process works on the new file
    if fresh is not None:
        with fresh.session() as s:
            assert s.scalars(select(Item.external_id)).all() == ["i1"]
        fresh.dispose()


def test_a_damaged_full_text_index_is_said_to_be_damaged() -> None:
    from recsys.store.sqlite import damaged

    assert damaged(Exception("vtable constructor failed: items_fts"))
    from recsys.api.errors import public_message

    said = public_message(StoreDamaged("the database file /x/recsys.db is damaged"))
    assert "retrying will not help" in said and "/x/" not in said  # not "retry shortly"; no path for a caller


@pytest.mark.parametrize("free, said", [(0, "disk_full"), (10**9, "store_down")])
def test_a_disk_io_error_with_no_byte_left_is_a_full_disk_not_a_server_to_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int, said: str) -> None:
    # with 0 bytes free SQLite cannot make the WAL's -shm file and says "disk I/O error": the message was "unreachable
    # ... start it or point RECSYS_DATABASE_URL at a running server"
    import shutil

    from sqlalchemy.exc import OperationalError

    store = Store(f"sqlite:///{tmp_path / 'recsys.db'}")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=free))
    e = store.unavailable(OperationalError("PRAGMA journal_mode=WAL", {}, Exception("disk I/O error")))
    assert e.code == said and "start it or point" not in e.message, e.message
    assert ("is full" in e.message) == (free == 0) and str(tmp_path) in e.message
    store.dispose()
