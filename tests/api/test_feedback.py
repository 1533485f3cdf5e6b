"""The feedback loop over HTTP (the in-memory fake service on a real SQLite store): every list has a fresh id and is
recorded, events naming it are attributed in the report, feeds page without repeats, shown items can be left out."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from recsys.api.auth import create_key
from recsys.api.testing import FakeCatalogue, FakeRecommender
from recsys.store import Store
from recsys.store.events import delete_user, ingest_events
from recsys.store.importers import run_import
from recsys.store.tables import ServedList
from tests.api.conftest import CATALOGUE

Client = Callable[..., TestClient]


class StoringCatalogue(FakeCatalogue):
    """The fake's writes, with its events also stored in the real store (as the service does): what the report
    reads."""

    def ingest_events(self, events: Sequence[Mapping[str, Any]]) -> list[Any]:
        ingest_events(self.fake.store, events)
        return super().ingest_events(events)

    def delete_user(self, user_id: str) -> int:
        delete_user(self.fake.store, user_id)
        return super().delete_user(user_id)


class StoringFake(FakeRecommender):
    """The fake over :class:`StoringCatalogue`."""

    def __init__(self, store: Store, items: Any = ()) -> None:
        super().__init__(store, items)
        self.catalogue = StoringCatalogue(self)


@pytest.fixture
def storing(sqlite_store: Store, tmp_path: Path) -> StoringFake:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(it) for it in CATALOGUE))
    run_import(sqlite_store, "items", path)
    return StoringFake(sqlite_store, CATALOGUE)


def _served(c: TestClient) -> dict[str, ServedList]:
    assert c.app.state.served.flush()  # type: ignore[attr-defined]
    with c.app.state.served.store.session() as s:  # type: ignore[attr-defined]
        return {r.id: r for r in s.scalars(select(ServedList))}


def _ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [it["item_id"] for it in r.json()["items"]]


def test_every_list_has_a_fresh_id_and_is_recorded(client: TestClient) -> None:
    png = _png()
    calls = {
        "recommend": lambda: client.get("/v1/users/u1/recommendations?k=4"),
        "recommend_post": lambda: client.post("/v1/users/u1/recommendations", json={"k": 4}),
        "buy_again": lambda: client.get("/v1/users/u1/buy-again?k=4"),
        "recommend_session": lambda: client.post("/v1/sessions/recommendations",
                                                 json={"events": [{"item_id": "s1", "type": "like"}], "k": 4}),
        "more_like_these": lambda: client.post("/v1/more-like-these", json={"positive": {"s1": 1.0}, "k": 4}),
        "trending": lambda: client.get("/v1/trending?k=4"),
        "similar": lambda: client.get("/v1/items/s1/similar?k=4"),
        "search_text": lambda: client.get("/v1/search/text?q=red+shoe&k=4"),
        "search_text_post": lambda: client.post("/v1/search/text", json={"query": "wool hat", "k": 4}),
        "search_image": lambda: client.post("/v1/search/image", files={"image": ("q.png", png, "image/png")},
                                            data={"k": "4"}),
    }
    answers: dict[str, tuple[str, list[str]]] = {}
    for name, call in calls.items():
        for _ in range(2):  # the same request twice: two lists, two ids
            r = call()
            assert r.status_code == 200, (name, r.text)
            rid = r.json()["meta"]["recommendation_id"]
            assert isinstance(rid, str) and len(rid) == 32
            answers[rid] = (name, [it["item_id"] for it in r.json()["items"]])
    assert len(answers) == 2 * len(calls)  # unique per list
    rows = _served(client)
    assert set(rows) == set(answers)
    for rid, (name, items) in answers.items():
        assert rows[rid].item_ids == items and rows[rid].size == len(items)
        assert rows[rid].source == name.removesuffix("_post")
        assert rows[rid].index_generation == "gen-1" and rows[rid].ranker_version == "fake-ranker"
    personal = {rows[rid].user_id for rid, (name, _) in answers.items() if name.startswith("recommend_p")}
    assert personal == {"u1"}
    assert {rows[rid].user_id for rid, (name, _) in answers.items() if name == "similar"} == {None}


def test_events_with_a_recommendation_id_are_attributed(make_client: Client, storing: StoringFake,
                                                        sqlite_store: Store) -> None:
    c = make_client(storing)
    page = c.get("/v1/users/u1/recommendations?k=3").json()
    rid, shown = page["meta"]["recommendation_id"], [it["item_id"] for it in page["items"]]
    similar = c.get("/v1/items/s1/similar?k=2").json()
    sim, sim_item = similar["meta"]["recommendation_id"], similar["items"][0]["item_id"]
    unshown = next(i for i in ("h1", "h2", "h3", "h4") if i not in shown)
    events = [{"user_id": "u1", "item_id": i, "type": "impression", "recommendation_id": rid, "position": p}
              for p, i in enumerate(shown)]
    events += [{"user_id": "u1", "item_id": shown[1], "type": "click", "recommendation_id": rid, "position": 1},
               {"user_id": "u1", "item_id": shown[1], "type": "purchase", "recommendation_id": rid, "position": 1},
               {"user_id": "u9", "item_id": sim_item, "type": "like", "recommendation_id": sim},  # anyone's list
               {"user_id": "u8", "item_id": sim_item, "type": "like", "recommendation_id": sim},  # once per item
               {"user_id": "u1", "item_id": "h2", "type": "click"}]  # no list named: not attributed
    # events the list cannot have led to: stored as events, never counted in its rates
    events += [{"user_id": "u1", "item_id": unshown, "type": "click", "recommendation_id": rid},  # not in it
               {"user_id": "u2", "item_id": shown[0], "type": "purchase", "recommendation_id": rid},  # another user
               {"user_id": "u1", "item_id": shown[1], "type": "click", "recommendation_id": rid},  # a repeat
               {"user_id": "u1", "item_id": shown[0], "type": "impression", "recommendation_id": rid}]  # a repeat
    r = c.post("/v1/events", json={"events": events})
    assert r.status_code == 200 and r.json()["stored"] == len(events), r.text
    _served(c)
    report = c.get("/v1/feedback/report").json()
    groups = {g["source"]: g for g in report["groups"]}
    rec = groups["recommend"]
    assert (rec["lists"], rec["impressions"], rec["clicks"], rec["purchases"], rec["likes"]) == (1, 3, 1, 1, 0)
    assert rec["unattributed"] == 4 and groups["similar"]["unattributed"] == 1
    assert rec["ctr"]["rate"] == pytest.approx(1 / 3) and rec["exposure_basis"] == "impressions"
    assert rec["ctr"]["low"] < 1 / 3 < rec["ctr"]["high"]
    assert groups["similar"]["likes"] == 1 and groups["similar"]["clicks"] == 0
    assert report["totals"]["clicks"] == 1 and report["totals"]["lists"] == 2
    assert report["totals"]["unattributed"] == 5
    # totals add each group's own exposures: the similar list's 2 shown items beside the 3 posted impressions
    assert groups["similar"]["exposure_basis"] == "items_served" and groups["similar"]["exposures"] == 2
    assert (report["totals"]["exposures"], report["totals"]["exposure_basis"]) == (5, "mixed")
    assert c.get("/v1/feedback/report", params={"since": "2200-01-01T00:00:00Z"}).json()["groups"] == []
    r = c.get("/v1/feedback/report", params={"since": "0001-01-01T00:00:00+05:00"})
    assert r.status_code == 422 and "out of range" in r.json()["detail"]
    assert c.get("/v1/feedback/report", params={"since": "7258118400"}).json()["groups"] == []  # unix seconds, 2200
    r = c.get("/v1/feedback/report", params={"since": "99999999999999"})  # not milliseconds read as 1973
    assert r.status_code == 422 and "unix seconds" in r.json()["detail"]
    r = c.get("/v1/feedback/report", params={"snice": "2026-12-01"})  # a misspelt filter is not the all-time report
    assert r.status_code == 422 and "snice" in r.text


def test_the_report_needs_an_admin_key(make_client: Client, sqlite_store: Store) -> None:
    c = make_client(auth=True)
    read, _ = create_key(sqlite_store, "reader", "read")
    admin, _ = create_key(sqlite_store, "admin", "admin")
    c.app.state.keys.reload()  # type: ignore[attr-defined]
    assert c.get("/v1/feedback/report", headers={"X-API-Key": read}).status_code == 403
    assert c.get("/v1/feedback/report", headers={"X-API-Key": admin}).status_code == 200


def test_impressions_are_not_taken_as_interest(client: TestClient) -> None:
    before = _ids(client.get("/v1/users/u2/recommendations?k=4"))
    events = [{"user_id": "u2", "item_id": "s2", "type": "like"}]
    client.post("/v1/events", json={"events": events})
    liked = _ids(client.get("/v1/users/u2/recommendations?k=4"))
    impressions = [{"user_id": "u2", "item_id": f"h{i}", "type": "impression"} for i in range(1, 9)]
    assert client.post("/v1/events", json={"events": impressions}).json()["stored"] == 8
    assert _ids(client.get("/v1/users/u2/recommendations?k=4")) == liked != before


def test_page_two_never_repeats_page_one(client: TestClient) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"k": 5}
    feed = None
    for _ in range(3):
        r = client.get("/v1/users/u3/recommendations", params=params)
        page = _ids(r)
        assert len(page) == 5 and not set(page) & set(seen)
        seen += page
        meta = r.json()["meta"]
        assert meta["next"]
        feed = feed or meta["recommendation_id"]
        params = {"k": 5, "cursor": meta["next"]}
    rows = _served(client)
    pages = sorted((r for r in rows.values()), key=lambda r: r.offset)
    assert [p.offset for p in pages] == [0, 5, 10] and {p.feed_id for p in pages[1:]} == {feed}
    last = client.get("/v1/users/u3/recommendations", params=params)  # 16 items: one left
    assert _ids(last) and not set(_ids(last)) & set(seen) and last.json()["meta"]["next"] is None
    # the POST twin and the session list page the same way
    first = client.post("/v1/users/u4/recommendations", json={"k": 6}).json()
    second = client.post("/v1/users/u4/recommendations", json={"k": 6, "cursor": first["meta"]["next"]})
    assert not set(_ids(second)) & {it["item_id"] for it in first["items"]}
    body = {"events": [{"item_id": "s1", "type": "like"}], "k": 4}
    s1 = client.post("/v1/sessions/recommendations", json=body).json()
    s2 = client.post("/v1/sessions/recommendations", json={**body, "cursor": s1["meta"]["next"]})
    assert not set(_ids(s2)) & {it["item_id"] for it in s1["items"]}


def test_a_bad_or_unknown_cursor_is_a_clear_422(client: TestClient) -> None:
    for cursor in ("not-a-cursor", "MTIzOjQ", "ZGM2MzM0ZjI2NDZiNDgwMjgxZWIzOWY3NGVlMWMzZjQ6NQ"):
        r = client.get("/v1/users/u1/recommendations", params={"k": 3, "cursor": cursor})
        assert r.status_code == 422 and "cursor" in r.json()["detail"], r.text


def test_a_cursor_pages_only_the_feed_it_was_given_for(client: TestClient) -> None:
    first = client.get("/v1/users/u7/recommendations", params={"k": 3}).json()
    for r, whose in ((client.get("/v1/users/u8/recommendations", params={"k": 3, "cursor": first["meta"]["next"]}),
                      "another user's"),
                     (client.post("/v1/sessions/recommendations", json={
                         "events": [{"item_id": "s1", "type": "like"}], "k": 3, "cursor": first["meta"]["next"]}),
                      "another user's")):
        assert r.status_code == 422 and whose in r.json()["detail"], r.text
    session = client.post("/v1/sessions/recommendations", json={"events": [{"item_id": "s1", "type": "like"}],
                                                                 "k": 3}).json()
    r = client.get("/v1/users/u7/recommendations", params={"k": 3, "cursor": session["meta"]["next"]})
    assert r.status_code == 422 and "a session's list" in r.json()["detail"]
    # the owner's own next page is untouched by the refused attempts: nothing it showed was recorded into the feed
    second = client.get("/v1/users/u7/recommendations", params={"k": 3, "cursor": first["meta"]["next"]})
    assert second.status_code == 200 and not set(_ids(second)) & {it["item_id"] for it in first["items"]}


def test_exclude_shown_hours_leaves_out_what_the_user_was_shown(make_client: Client, tmp_path: Path,
                                                                 storing: StoringFake) -> None:
    client = make_client(storing)
    first = _ids(client.get("/v1/users/u5/recommendations?k=4"))
    again = _ids(client.get("/v1/users/u5/recommendations?k=4"))
    assert again == first  # off by default
    fresh = _ids(client.get("/v1/users/u5/recommendations", params={"k": 4, "exclude_shown_hours": 1}))
    assert not set(fresh) & set(first)
    client.post("/v1/events", json={"events": [{"user_id": "u5", "item_id": "s7", "type": "impression"}]})
    other = _ids(client.get("/v1/users/u5/recommendations", params={"k": 16, "exclude_shown_hours": 1}))
    assert not set(other) & {*first, *fresh, "s7"} and other
    # the setting turns it on for every request; a request's 0 turns it off again
    from tests.api.conftest import api_settings

    settings = api_settings(tmp_path)
    settings.feedback = settings.feedback.model_copy(update={"exclude_shown_hours": 24})
    from recsys.api import create_app

    with TestClient(create_app(settings, storing)) as c2:
        a = _ids(c2.get("/v1/users/u6/recommendations?k=4"))
        b = _ids(c2.get("/v1/users/u6/recommendations?k=4"))
        assert not set(a) & set(b)
        assert _ids(c2.get("/v1/users/u6/recommendations?k=4&exclude_shown_hours=0")) == a


def test_dropped_lists_are_counted_in_metrics(make_client: Client) -> None:
    client = make_client()
    log = client.app.state.served  # type: ignore[attr-defined]
    import queue

    class Full(queue.Queue):  # type: ignore[type-arg]
        """A writer that never catches up: every list finds the queue full."""

        def put_nowait(self, item: Any) -> None:
            raise queue.Full

    log._queue = Full()
    r = client.get("/v1/users/u1/recommendations?k=2")
    assert r.status_code == 200 and r.json()["meta"]["recommendation_id"]
    assert log.dropped == 1
    metrics = client.get("/metrics").text
    assert "recsys_served_lists_dropped_total 1.0" in metrics


def test_the_python_client_pages_attributes_and_reports(make_client: Client, storing: StoringFake,
                                                         sqlite_store: Store) -> None:
    from recsys.client import Client as ApiClient

    tc = make_client(storing, auth=True)
    key, _ = create_key(sqlite_store, "admin", "admin")
    tc.app.state.keys.reload()  # type: ignore[attr-defined]
    c = ApiClient(api_key=key, http=tc)
    one = c.recommend("u7", k=4)
    two = c.recommend("u7", k=4, cursor=one.next)
    assert one.recommendation_id and one.next and not set(one.ids) & set(two.ids)
    assert not set(c.recommend("u7", k=4, exclude_shown_hours=1).ids) & {*one.ids, *two.ids}
    c.send_events([{"user_id": "u7", "item_id": one.ids[0], "type": "click", "position": 0,
                    "recommendation_id": one.recommendation_id}])
    tc.app.state.served.flush()  # type: ignore[attr-defined]
    report = c.feedback_report()
    assert report["totals"]["clicks"] == 1 and report["totals"]["lists"] == 3
    assert c.feedback_report(since="2200-01-01T00:00:00")["groups"] == []


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_deleting_a_user_forgets_what_they_were_shown(make_client: Client, storing: StoringFake) -> None:
    c = make_client(storing)
    view = {"events": [{"user_id": "u9", "item_id": "s3", "type": "view"}]}
    c.post("/v1/events", json=view)
    first = _ids(c.get("/v1/users/u9/recommendations", params={"k": 4}))
    assert [r for r in _served(c).values() if r.user_id == "u9"]
    assert c.delete("/v1/users/u9").status_code == 200
    assert not [r for r in _served(c).values() if r.user_id == "u9"]
    c.post("/v1/events", json=view)  # the id comes back as a new user with the same one event
    again = _ids(c.get("/v1/users/u9/recommendations", params={"k": 4, "exclude_shown_hours": 1}))
    assert again == first  # nothing was shown to the new user yet
