"""What the clients send and keep: every API route has a method, results keep the item details the server sends,
a single id is one id, and the parameters the API takes (cursor on session lists, ``now``, search modes) reach it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender
from recsys.client import AsyncClient, Client, ItemSummary, Result
from recsys.errors import UnknownUser
from recsys.serving.results import result_object
from recsys.serving.rules import ListRules
from tests.conftest import run_async

ANY_BODY = {"items": [], "meta": {}, "results": [], "experiments": [], "events": 0}
"""An answer every method can read: the recorded requests are what the tests look at."""


def _recording(seen: list[httpx.Request], body: Any = ANY_BODY) -> Client:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    return Client(http=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://x"))


# every public method with arguments it can be sent with (a new method without a line here fails the test below)
CALLS: dict[str, Callable[[Client], object]] = {
    "health": lambda c: c.health(), "ready": lambda c: c.ready(), "status": lambda c: c.status(),
    "metrics": lambda c: c.metrics(), "feedback_report": lambda c: c.feedback_report(),
    "experiments": lambda c: c.experiments(), "experiment": lambda c: c.experiment("ab"),
    "experiment_report": lambda c: c.experiment_report("ab"), "get_item": lambda c: c.get_item("a"),
    "put_item": lambda c: c.put_item("a", {}), "upsert_items": lambda c: c.upsert_items([{"item_id": "a"}]),
    "delete_item": lambda c: c.delete_item("a"), "delete_user": lambda c: c.delete_user("u"),
    "send_events": lambda c: c.send_events([{"user_id": "u", "item_id": "a", "type": "view"}]),
    "recommend": lambda c: c.recommend("u"),
    "buy_again": lambda c: c.buy_again("u"), "recommend_session": lambda c: c.recommend_session([]),
    "similar": lambda c: c.similar("a"), "search_text": lambda c: c.search_text("q"),
    "search_image": lambda c: c.search_image(b"x"), "more_like_these": lambda c: c.more_like_these(["a"]),
    "trending": lambda c: c.trending(),
}


def test_every_route_of_the_api_has_a_client_method(client: TestClient) -> None:
    """The OpenAPI is the contract: each of its operations is reached by a method (a GET whose POST twin the client
    sends counts as reached)."""
    methods = {n for n in vars(Client) if not n.startswith("_") and callable(getattr(Client, n)) and n != "close"}
    assert methods == CALLS.keys()
    seen: list[httpx.Request] = []
    for call in CALLS.values():
        call(_recording(seen))
    sent = {(r.method, r.url.path) for r in seen}
    missing = []
    for path, ops in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method in ops:
            twins = {method.upper(), "POST"} if method == "get" else {method.upper()}
            if not any(m in twins and pattern.match(p) for m, p in sent):
                missing.append(f"{method.upper()} {path}")
    assert not missing


def test_results_keep_the_item_details_and_a_null_score() -> None:
    details = {"title": "Red dress", "category": "dress", "price": 19.5, "image_url": "/media/a", "colour": "red"}
    body = {"items": [result_object("a", float("nan"), ["search"], None, details),  # the server's own JSON
                      {"item_id": "b", "score": 0.5, "sources": [], "rank_note": "a later server's field"}],
            "meta": {}}
    want = [Result("a", None, ["search"], None, ItemSummary("Red dress", "dress", 19.5, "/media/a", {"colour": "red"})),
            Result("b", 0.5)]
    assert _recording([], body).similar("x").items == want

    async def run() -> list[Result]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)),
                                 base_url="http://x")
        async with AsyncClient(http=http) as c:
            return (await c.similar("x")).items

    assert run_async(run()) == want


def test_a_single_id_is_one_id_not_its_characters() -> None:
    seen: list[httpx.Request] = []
    c = _recording(seen)
    c.recommend("u1", exclude="item-1", bury="s2")
    c.recommend_session([{"item_id": "s1", "type": "view"}], exclude="item-1", bury="s2")
    c.similar("a", exclude="item-1")
    c.search_text("hat", exclude="item-1")
    c.more_like_these("a1", "b2", exclude="item-1")
    c.more_like_these({"a1": 2.0}, {"b1", "b2"}, exclude={"item-1"})  # mappings and sets as before
    sent = [json.loads(r.content) for r in seen]
    assert all(b["exclude"] == ["item-1"] for b in sent)
    assert sent[0]["bury"] == sent[1]["bury"] == ["s2"]
    assert (sent[4]["positive"], sent[4]["negative"]) == ({"a1": 1.0}, {"b2": 1.0})
    assert (sent[5]["positive"], sent[5]["negative"]) == ({"a1": 2.0}, {"b1": 1.0, "b2": 1.0})


def test_now_and_search_modes_are_sent() -> None:
    seen: list[httpx.Request] = []
    c = _recording(seen)
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    c.recommend("u1", now=when)
    c.buy_again("u1", k=5, now="2024-05-01T12:00:00")
    c.search_text("hat", mode="lexical", lexical_weight=0.3)
    c.recommend("u1")
    c.search_text("hat")
    assert json.loads(seen[0].content)["now"] == "2024-05-01T12:00:00+00:00"
    assert seen[1].url.path == "/v1/users/u1/buy-again" and dict(seen[1].url.params) == {
        "k": "5", "now": "2024-05-01T12:00:00"}
    assert {k: json.loads(seen[2].content)[k] for k in ("mode", "lexical_weight")} == {"mode": "lexical",
                                                                                      "lexical_weight": 0.3}
    assert "now" not in json.loads(seen[3].content)  # unset: the server's defaults apply
    assert not {"mode", "lexical_weight"} & json.loads(seen[4].content).keys()


def test_session_lists_page_with_the_cursor_and_take_rules(make_client: Callable[..., TestClient],
                                                            fake: FakeRecommender) -> None:
    c = Client(http=make_client())
    events = [{"item_id": "s1", "type": "like"}]
    one = c.recommend_session(events, k=3)
    two = c.recommend_session(events, k=3, cursor=one.next)
    assert one.next and len(two.ids) == 3 and not set(one.ids) & set(two.ids)
    c.recommend_session(events, k=3, pins={"h5": 1}, bury="s2", exploration=0.0)
    assert fake.last_rules == ListRules.of(pins={"h5": 1}, bury=["s2"])


def test_buy_again_delete_user_and_search_modes_reach_the_server(make_client: Callable[..., TestClient],
                                                                  fake: FakeRecommender) -> None:
    c = Client(http=make_client())
    c.send_events([{"user_id": "u1", "item_id": i, "type": "purchase"} for i in ("h1", "h1", "s2")])
    again = c.buy_again("u1", k=5, now=datetime(2030, 1, 1))
    assert again.ids == ["h1", "s2"] and again.items[0].sources == ["repurchase"]
    assert c.recommend("u1", k=2, now=datetime(2030, 1, 1, tzinfo=UTC)).ids  # the server takes the time as sent
    c.search_text("wool", k=2, mode="hybrid", lexical_weight=0.25)
    assert fake.last_search == {"mode": "hybrid", "lexical_weight": 0.25}
    assert c.delete_user("u1") == 3
    with pytest.raises(UnknownUser):
        c.delete_user("u1")
