from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from recsys.config import Settings
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.items import set_flags
from recsys.store.queries import (
    REMOVED_VERSION,
    events_frame,
    history_mark,
    removed_state,
    request_state,
    user_event_records,
)
from recsys.store.tables import CatalogueState, Item, ItemMedia, User
from tests.conftest import PG_URL, _pg_database
from tests.store.fixtures import write_hm


def test_ingest_reports_per_event_and_is_idempotent(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    batch = [
        {"user_id": "new-user", "item_id": "0108775015", "type": "like", "event_id": "a"},
        {"user_id": "new-user", "item_id": "0108775015", "type": "like", "event_id": "a"},  # repeated in batch
        {"user_id": "new-user", "item_id": "missing", "type": "view"},
        {"user_id": "new-user", "item_id": "0108775044", "type": "teleport"},
        {"user_id": "new-user", "item_id": "0108775044", "type": "view", "timestamp": "2024-05-01T12:00:00+02:00"},
        {"user_id": "new-user", "item_id": "0108775044", "type": "rating", "value": "nan"},
    ]
    results = ingest_events(store, batch)
    assert [r.status for r in results] == ["stored", "duplicate", "error", "error", "stored", "error"]
    assert "unknown item" in (results[2].error or "") and "event type" in (results[3].error or "")
    again = ingest_events(store, batch[:1])
    assert again[0].status == "duplicate"
    with store.session() as s:
        df = events_frame(s, users=["new-user"])
    assert len(df) == 2
    assert str(df[df.type == "view"].ts.iloc[0]) == "2024-05-01 10:00:00"  # stored as UTC


def test_an_event_id_held_by_another_event_is_an_error_not_a_duplicate(store: Store, settings: Settings,
                                                                       tmp_path: Path) -> None:
    # a client whose ids restart (per session, per day) had its new events answered "duplicate" and dropped
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    first = {"user_id": "u", "item_id": "0108775015", "type": "click", "event_id": "e1"}
    assert [r.status for r in ingest_events(store, [first])] == ["stored"]
    retry = ingest_events(store, [first])  # no timestamp: stamped anew by the server, still the same event
    other = ingest_events(store, [{**first, "item_id": "0108775044"}])
    batch = ingest_events(store, [{**first, "event_id": "e2"}, {**first, "event_id": "e2"},
                                  {**first, "event_id": "e2", "type": "purchase"}])
    assert retry[0].status == "duplicate"
    assert other[0].status == "error" and "'e1'" in (other[0].error or "") and "another stored event" in (
        other[0].error or "") and "click of '0108775015'" in (other[0].error or "")
    assert [r.status for r in batch] == ["stored", "duplicate", "error"]
    assert "another event in this batch" in (batch[2].error or "")
    with store.session() as s:
        assert sorted(events_frame(s, users=["u"])["item_id"]) == ["0108775015", "0108775015"]


def test_an_event_on_a_deleted_item_is_kept_with_a_warning(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    with store.session() as s:
        set_flags(s, ["0108775044"], deleted=True)
    got = ingest_events(store, [{"user_id": "u-del", "item_id": "0108775044", "type": "purchase"},
                                {"user_id": "u-del", "item_id": "0108775015", "type": "purchase"}])
    assert [r.status for r in got] == ["stored", "stored"]  # a purchase of a delisted item still happened
    assert "was deleted" in (got[0].warning or "") and got[1].warning is None


def test_request_state_reads_event_ids_and_the_removed_version_in_one_statement(store: Store, settings: Settings,
                                                                                tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    batch = [{"user_id": "u-state", "item_id": i, "type": "view", "event_id": f"s{i}"}
             for i in ("0108775015", "0108775044")]
    ingest_events(store, batch)
    with store.reading() as c:
        _, before, details = request_state(c, "u-state")
    with store.session() as s:
        set_flags(s, ["0108775044"], hidden=True)
        set_flags(s, ["0108775015"], deleted=True)
    with store.reading() as c:
        events, version, details_after = request_state(c, "u-state")
        records = user_event_records(c, "u-state")
        assert events == (2, max(r[4] for r in records)) == history_mark(c, "u-state")
        assert before is not None and version is not None and version > before
        assert removed_state(c) == ({"0108775044", "0108775015"}, version)
        assert details is not None and details_after == details  # hiding changes no shown details
        assert request_state(c, "nobody") == ((0, None), version, details)  # no events, same versions


def _version(store: Store) -> int:
    with store.reading() as c:
        return int(c.execute(REMOVED_VERSION).scalar_one())


def test_removed_version_moves_with_every_change_to_which_items_are_removed(store: Store) -> None:
    """Database triggers (migration 0003), so every writer counts: the API, imports, the CLI, plain SQL."""
    steps: list[tuple[str, Callable[[Session], Any], int]] = [
        ("a visible item arrives", lambda s: s.add(Item(external_id="a", content_hash="h")), 0),
        ("a hidden item arrives", lambda s: s.add(Item(external_id="b", content_hash="h", hidden=True)), 1),
        ("a title changes", lambda s: s.execute(update(Item).where(Item.external_id == "a").values(title="t")), 0),
        ("an item is hidden", lambda s: set_flags(s, ["a"], hidden=True), 1),
        ("a hidden item is also deleted", lambda s: set_flags(s, ["a"], deleted=True), 0),
        ("it is shown again, still deleted", lambda s: set_flags(s, ["a"], hidden=False), 0),
        ("it is undeleted", lambda s: set_flags(s, ["a"], deleted=False), 1),
        ("a removed item is renamed", lambda s: s.execute(update(Item).where(Item.external_id == "b")
                                                          .values(external_id="b2")), 1),
        ("a visible item is renamed", lambda s: s.execute(update(Item).where(Item.external_id == "a")
                                                          .values(external_id="a2")), 0),
        ("a removed row goes", lambda s: s.execute(delete(Item).where(Item.external_id == "b2")), 1),
        ("two items hidden in one transaction", lambda s: (s.add(Item(external_id="c", content_hash="h")),
                                                           s.flush(), set_flags(s, ["a2", "c"], hidden=True)), 1),
    ]
    for what, change, moves in steps:
        before = _version(store)
        with store.session() as s:
            change(s)
        after = _version(store)
        assert (after > before) if moves else (after == before), what  # SQLite: a step per row; PostgreSQL: per commit


def _details_version(store: Store) -> int:
    with store.reading() as c:
        return int(c.execute(select(CatalogueState.details_version)).scalar_one())


def test_details_version_moves_with_every_change_to_what_a_result_shows(store: Store) -> None:
    """Database triggers (migration 0009): a cached list carries each item's title, category, price and image URL,
    so a change to any of them, by any writer, must change the cache key."""
    def media(s: Session, **values: Any) -> Any:
        return s.execute(update(ItemMedia).where(ItemMedia.uri == "a.jpg").values(**values))

    steps: list[tuple[str, Callable[[Session], Any], int]] = [
        ("an item arrives", lambda s: s.add(Item(external_id="a", content_hash="h", title="t", price=1.0)), 0),
        ("its title changes", lambda s: s.execute(update(Item).where(Item.external_id == "a").values(title="u")), 1),
        ("its price changes", lambda s: s.execute(update(Item).where(Item.external_id == "a").values(price=2.0)), 1),
        ("its category is set", lambda s: s.execute(update(Item).where(Item.external_id == "a")
                                                    .values(category="c")), 1),
        ("the same price again", lambda s: s.execute(update(Item).where(Item.external_id == "a").values(price=2.0)),
         0),
        ("its description changes", lambda s: s.execute(update(Item).where(Item.external_id == "a")
                                                        .values(description="d")), 0),
        ("an image arrives", lambda s: s.add(ItemMedia(item_id=s.scalar(select(Item.id)), kind="image",
                                                       uri="a.jpg", position=0)), 1),
        ("it fails to decode", lambda s: media(s, status="error"), 1),
        ("the image goes", lambda s: s.execute(delete(ItemMedia).where(ItemMedia.uri == "a.jpg")), 1),
    ]
    for what, change, moves in steps:
        before = _details_version(store)
        with store.session() as s:
            change(s)
        after = _details_version(store)
        assert (after > before) if moves else (after == before), what


def _hide_in_a_transaction(store: Store, item_id: str, errors: list[BaseException]) -> None:
    try:
        with store.session() as s:
            s.execute(text("SET LOCAL lock_timeout = '20s'"))
            set_flags(s, [item_id], hidden=True)
    except BaseException as e:
        errors.append(e)


@pytest.mark.postgres
def test_removals_in_concurrent_transactions_do_not_deadlock(tmp_path: Path) -> None:
    """PostgreSQL: the version row is locked only at commit. Taken mid-transaction, a hide waiting for it while
    holding an item another transaction then wanted was a deadlock."""
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for url in _pg_database():
        store = Store(url)
        store.upgrade()
        try:
            with store.session() as s:
                s.add_all(Item(external_id=i, content_hash="h") for i in ("i2", "i3"))
            before = _version(store)
            errors: list[BaseException] = []
            with store.session() as s:
                s.execute(text("SET LOCAL lock_timeout = '20s'"))
                set_flags(s, ["i2"], hidden=True)
                t = threading.Thread(target=_hide_in_a_transaction, args=(store, "i3", errors))
                t.start()
                time.sleep(0.3)  # the other transaction has hidden i3 and holds its row
                s.execute(update(Item).where(Item.external_id == "i3").values(price=1.0))  # waits for its commit
            t.join()
            assert not errors, errors
            assert _version(store) == before + 2
        finally:
            store.dispose()


def test_a_deleted_users_event_ids_are_never_handed_out_again(store: Store, settings: Settings,
                                                             tmp_path: Path) -> None:
    """The result cache keys on the count and highest id of a user's events, the events watermark on the highest
    id: a user deleted and posting as many events again must not get the deleted ones' ids (SQLite reused them
    before migration 0008)."""
    from recsys.store.events import delete_user
    from recsys.store.queries import events_watermark

    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)

    def post(item: str) -> list[int]:
        ingest_events(store, [{"user_id": "u-gone", "item_id": item, "type": "purchase", "event_id": str(i)}
                              for i in range(2)])
        with store.reading() as c, store.session() as s:
            return sorted(r[4] for r in user_event_records(c, "u-gone")), events_watermark(s)

    first, mark = post("0108775015")
    assert delete_user(store, "u-gone") == 2
    again, mark_again = post("0108775044")
    assert not set(first) & set(again) and mark_again != mark


@pytest.fixture
def pg_store() -> Iterator[Store]:
    """A fresh PostgreSQL database holding items i0, i1, i2."""
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for url in _pg_database():
        store = Store(url)
        store.upgrade()
        with store.session() as s:
            s.add_all(Item(external_id=f"i{k}", content_hash="h") for k in range(3))
        try:
            yield store
        finally:
            store.dispose()


def _post_at(gate: threading.Barrier, store: Store, events: list[dict[str, Any]], errors: list[BaseException]) -> None:
    gate.wait()
    try:
        assert all(r.status in ("stored", "duplicate") for r in ingest_events(store, events))
    except BaseException as e:
        errors.append(e)


@pytest.mark.postgres
def test_batches_naming_the_same_new_users_in_other_orders_do_not_deadlock(pg_store: Store) -> None:
    """Two API workers posting batches that name the same new users (or client ids) in opposite orders each waited
    on the other's uncommitted row: PostgreSQL aborted one batch whole, reported as 'database unreachable'."""
    errors: list[BaseException] = []
    for rnd in range(12):
        batch = [{"user_id": f"r{rnd}-u{k}", "item_id": f"i{k % 3}", "type": "view", "event_id": f"e{k}"}
                 for k in range(150)]
        gate = threading.Barrier(2)
        threads = [threading.Thread(target=_post_at, args=(gate, pg_store, b, errors)) for b in (batch, batch[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]


@pytest.mark.postgres
def test_a_user_deleted_while_their_batch_is_stored_does_not_fail_the_batch(pg_store: Store,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A DELETE of a user landing between the batch's user lookup and its insert broke the foreign key: a 500 for the
    whole batch, other users' events included. The delete now waits for the batch, then removes it with the user."""
    from recsys.store.events import delete_user
    from recsys.store.importers import writer

    ingest_events(pg_store, [{"user_id": "u-del", "item_id": "i0", "type": "view"}])
    real = writer.ensure_users
    deleted = threading.Event()

    def delete() -> None:
        delete_user(pg_store, "u-del")
        deleted.set()

    def ensure_then_delete(session: Session, ids: Any) -> dict[str, int]:
        known = real(session, ids)
        t = threading.Thread(target=delete)
        t.start()
        t.join(timeout=1.5)  # without the lock the delete commits here, before the events go in
        return known

    monkeypatch.setattr(writer, "ensure_users", ensure_then_delete)
    results = ingest_events(pg_store, [{"user_id": "u-del", "item_id": "i0", "type": "view"},
                                       {"user_id": "u-other", "item_id": "i0", "type": "view"}])
    assert [r.status for r in results] == ["stored", "stored"]
    assert deleted.wait(10)  # the delete went through once the batch was in
    with pg_store.session() as s:
        users = set(s.scalars(select(User.external_id)))
    assert "u-other" in users and "u-del" not in users
