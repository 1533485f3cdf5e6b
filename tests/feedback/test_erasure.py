"""A user's erasure (DELETE /v1/users/{id}) reaches every worker: two ServedLogs on one store stand in for two
workers (SQLite, and PostgreSQL when RECSYS_TEST_POSTGRES_URL is set). Another worker forgets a list once written
(the store has it), lists made before the erasure are never written by the deleting process, and those another
process writes after the delete are deleted by the purges that follow it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from recsys.api import create_app
from recsys.api.testing import FakeRecommender
from recsys.errors import UnknownUser
from recsys.feedback import Served, ServedLog, new_recommendation_id
from recsys.store import Store
from recsys.store.events import delete_user
from recsys.store.tables import ServedList, utcnow
from tests.api.conftest import CATALOGUE, api_settings


def _list(user: str, *items: str, feed: str | None = None, offset: int = 0, **kw: Any) -> Served:
    return Served(new_recommendation_id(), "recommend", items, user, feed, offset, "g", "r", paged=True, **kw)


def _delete(store: Store, user: str) -> None:
    """The delete's transaction (an id with nothing stored yet is unknown to it: nothing to delete)."""
    with contextlib.suppress(UnknownUser):
        delete_user(store, user)


def _rows(store: Store, user: str) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(ServedList.id).where(ServedList.user_id == user)))


@pytest.fixture
def workers(store: Store) -> Iterator[tuple[ServedLog, ServedLog]]:
    a, b = ServedLog(store), ServedLog(store)
    yield a, b
    a.close()
    b.close()


def test_another_worker_forgets_a_deleted_users_written_lists(store: Store,
                                                              workers: tuple[ServedLog, ServedLog]) -> None:
    a, b = workers
    gone, kept = _list("gone", "i1", "i2"), _list("kept", "i3", "i4")
    b.record(gone)
    b.record(kept)
    assert b.feed_items(gone.id) == ("gone", ["i1", "i2"]) and b.shown_to("gone", 24) == {"i1", "i2"}
    assert b.flush(timeout_s=30)
    assert b.recent.feed(gone.id) is None and b.recent.user("gone", utcnow().replace(year=2000)) == set()
    _delete(store, "gone")  # worker a's delete: the store's rows go
    assert b.feed_items(gone.id) is None  # an old cursor finds no feed (the route's 422) on the other worker too
    assert b.shown_to("gone", 24) == set()  # and the id's first list leaves nothing out
    # a live user's feed still pages across workers, from the store
    nxt = _list("kept", "i5", "i6", feed=kept.id, offset=2)
    a.record(nxt)
    assert b.feed_items(kept.id, 4) == ("kept", ["i3", "i4", "i5", "i6"])  # a's page not written yet: waited for
    assert a.flush(timeout_s=30)
    assert a.feed_items(kept.id) == b.feed_items(kept.id) == ("kept", ["i3", "i4", "i5", "i6"])
    assert b.shown_to("kept", 24) == a.shown_to("kept", 24) == {"i3", "i4", "i5", "i6"}


def test_recording_off_keeps_memory(sqlite_store: Store) -> None:
    log = ServedLog(sqlite_store, enabled=False)
    page = _list("u1", "i1", "i2")
    log.record(page)
    log.flush(timeout_s=5)
    assert log.feed_items(page.id) == ("u1", ["i1", "i2"]) and log.shown_to("u1", 1) == {"i1", "i2"}
    log.erase_user("u1")
    assert log.feed_items(page.id) is None and log.shown_to("u1", 1) == set()


def test_lists_made_before_the_erasure_are_never_written_by_the_deleting_worker(
        store: Store, workers: tuple[ServedLog, ServedLog]) -> None:
    a, _ = workers
    before = utcnow()
    a.record(_list("gone", "i1"))  # still queued (the writer lingers)
    _delete(store, "gone")
    a.erase_user("gone")
    a.record(_list("gone", "i2", created_at=before))  # a ranking under way during the delete
    assert a.flush(timeout_s=30)
    assert _rows(store, "gone") == []
    assert a.shown_to("gone", 24) == set()
    new_life = _list("gone", "i9")  # made after the erasure: the id's new life
    a.record(new_life)
    assert a.flush(timeout_s=30)
    assert _rows(store, "gone") == [new_life.id] and a.feed_items(new_life.id) == ("gone", ["i9"])


class _Timers:
    """threading.Timer, held until the test runs it."""

    def __init__(self) -> None:
        self.held: list[Callable[[], None]] = []

    def __call__(self, _s: float, fn: Callable[..., None], args: tuple[Any, ...] = ()) -> Any:
        held = self.held

        class Held:
            daemon = True

            def start(self) -> None:
                held.append(lambda: fn(*args))

        return Held()


def test_lists_another_worker_writes_after_the_delete_are_purged(
        store: Store, workers: tuple[ServedLog, ServedLog], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = workers
    b.linger_s = 3600.0  # b's list stays queued until b.flush(): written after every purge of a's erase_user
    timers = _Timers()
    monkeypatch.setattr(threading, "Timer", timers)
    early = _list("gone", "i1")
    b.record(early)
    b.record(_list("kept", "i3"))
    _delete(store, "gone")
    a.erase_user("gone")
    assert b.flush(timeout_s=30)
    assert _rows(store, "gone") == [early.id]  # written by b after the delete
    assert len(timers.held) == 1
    timers.held[0]()  # the later purge
    assert _rows(store, "gone") == [] and len(_rows(store, "kept")) == 1


def test_lists_another_worker_writes_just_after_the_delete_are_gone_when_it_answers(
        store: Store, workers: tuple[ServedLog, ServedLog]) -> None:
    a, b = workers
    b.record(_list("gone", "i1"))  # queued in b: written a writer linger later, after the delete committed
    _delete(store, "gone")
    a.erase_user("gone")
    deadline = time.monotonic() + 60  # b's writer wrote it meanwhile (its linger), before a's purge
    while b._pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows(store, "gone") == []


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[tuple[TestClient, FakeRecommender]]:
    fake = FakeRecommender(store, CATALOGUE)
    with TestClient(create_app(api_settings(tmp_path), fake), raise_server_exceptions=False) as c:
        yield c, fake


def test_the_delete_route_erases_lists_ranked_while_it_ran(client: tuple[TestClient, FakeRecommender],
                                                          store: Store) -> None:
    c, fake = client
    served: ServedLog = c.app.state.served  # type: ignore[attr-defined]
    c.post("/v1/events", json={"events": [{"user_id": "u9", "item_id": "s3", "type": "view"}]})
    first = c.get("/v1/users/u9/recommendations", params={"k": 4}).json()
    began = utcnow()
    fake_delete = fake.catalogue.delete_user

    def deleting(user_id: str) -> int:
        delete_user(store, user_id)
        served.record(_list(user_id, "s1", created_at=began))  # a list ranked from the history being erased
        return fake_delete(user_id)

    fake.catalogue.delete_user = deleting  # type: ignore[method-assign]
    assert c.delete("/v1/users/u9").status_code == 200
    assert served.flush(timeout_s=30)
    assert _rows(store, "u9") == []
    cursor = first["meta"]["next"]
    assert c.get("/v1/users/u9/recommendations", params={"k": 4, "cursor": cursor}).status_code == 422
    again = c.get("/v1/users/u9/recommendations", params={"k": 4})  # the id's new life is recorded and pages
    assert c.get("/v1/users/u9/recommendations",
                 params={"k": 4, "cursor": again.json()["meta"]["next"]}).status_code == 200
    assert served.flush(timeout_s=30) and len(_rows(store, "u9")) == 2
