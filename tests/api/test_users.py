"""User deletion: DELETE /v1/users/{id} removes the user and every event of theirs, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from recsys.config import Settings
from recsys.errors import UnknownUser
from recsys.service import Recommender
from recsys.store import Store
from recsys.store.importers import run_import
from recsys.store.tables import Event, ServedList, User
from tests.api.servers import write_items


def test_delete_user_removes_their_events(store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=store.url)
    run_import(store, "items", write_items(tmp_path / "items.jsonl", 3), settings=settings)
    rec = Recommender(settings, store)
    events = [{"user_id": u, "item_id": f"i{n}", "type": "view"} for u in ("gone", "kept") for n in range(3)]
    assert all(r.status == "stored" for r in rec.catalogue.ingest_events(events))
    assert rec.catalogue.delete_user("gone") == 3
    with store.session() as s:
        assert s.scalars(select(User.external_id)).all() == ["kept"]
        assert s.scalar(select(func.count(Event.id))) == 3
    with pytest.raises(UnknownUser):
        rec.catalogue.delete_user("gone")


def test_delete_user_route(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    events = [{"user_id": "u1", "item_id": "s1", "type": "like"}, {"user_id": "u1", "item_id": "s2", "type": "view"}]
    assert client.post("/v1/events", json={"events": events}).json()["stored"] == 2
    r = client.delete("/v1/users/u1")
    assert r.status_code == 200 and r.json() == {"user_id": "u1", "deleted": True, "events": 2}
    assert client.delete("/v1/users/u1").status_code == 404
    assert "popular" in client.get("/v1/users/u1/recommendations").json()["items"][0]["sources"]  # a new user now



def test_deleting_a_user_who_was_only_served_lists_removes_the_lists(store: Store, tmp_path: Path) -> None:
    from recsys.feedback import Served, ServedLog, new_recommendation_id

    settings = Settings(home=tmp_path / "home", database_url=store.url)
    run_import(store, "items", write_items(tmp_path / "items.jsonl", 3), settings=settings)
    rec = Recommender(settings, store)
    log = ServedLog(store)
    first = Served(new_recommendation_id(), "recommend", ("i0", "i1"), "ghost", None, 0, "g", "r", paged=True)
    log.record(first)  # an unknown user's list: no user row, but their id in a stored list
    log.record(Served(new_recommendation_id(), "recommend", ("i2",), "kept", None, 0, "g", "r", paged=True))
    log.flush()
    assert rec.catalogue.delete_user("ghost") == 0
    log.recent.forget("ghost")
    with store.session() as s:
        assert s.scalars(select(ServedList.user_id)).all() == ["kept"]
    assert log.feed_items(first.id) is None  # their feed's cursor stops, in memory too
    with pytest.raises(UnknownUser):
        rec.catalogue.delete_user("ghost")
    log.close()
