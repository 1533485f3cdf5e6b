"""recsys.client.Client against the app (through FastAPI's TestClient, an httpx.Client)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import recsys.client
from recsys.api.auth import create_key
from recsys.client import ApiError, Client, EventResult
from recsys.errors import AuthError, Forbidden, UnknownItem, ValidationFailed
from recsys.store import Store


def test_public_api() -> None:
    assert set(recsys.client.__all__) == {"ApiError", "AsyncClient", "Client", "ClientClosed", "EventResult",
                                          "ItemSummary", "Page", "Result", "Retry", "Unreachable"}


def test_client_covers_the_endpoints(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    tc = make_client(auth=True)
    key, _ = create_key(sqlite_store, "admin", "admin")
    c = Client(api_key=key, http=tc)
    assert c.health() and c.ready()["ready"] and c.status()["index_generation"] == "gen-1"
    assert "recsys_http_requests_total" in c.metrics()
    assert c.put_item("n1", {"title": "green hat", "category": "hats", "price": 3})["title"] == "green hat"
    assert c.upsert_items([{"item_id": "n2", "category": "hats"}])[0]["status"] == "stored"
    assert c.get_item("n2")["category"] == "hats"
    c.delete_item("n2")
    with pytest.raises(UnknownItem):
        c.get_item("n2")
    res = c.send_events([{"user_id": "u1", "item_id": "h1", "type": "like", "event_id": "x"},
                         {"user_id": "u1", "item_id": "h1", "type": "like", "event_id": "x"}])
    assert res == [EventResult(0, "stored", 1), EventResult(1, "duplicate")]
    page = c.recommend("u1", k=3, filter={"categories": ["hats"]}, exclude=["h2"], explain=True, debug=True)
    assert len(page.ids) == 3 and "h2" not in page.ids and page.items[0].explanation is not None
    assert page.debug is not None and page.meta["index_generation"] == "gen-1"
    session = c.recommend_session([{"item_id": "s1", "type": "like"}], k=2, debug=True)
    assert set(session.ids) <= {f"s{i}" for i in range(9)} and session.debug is not None
    assert session.debug["timings_ms"]["service_total"] >= 0
    assert c.recommend_session([{"item_id": "s1", "type": "like"}], k=2).debug is None
    assert c.similar("s1", k=2, filter={"price_max": 30}).ids == ["s2", "s3"]
    assert c.search_text("wool", k=2).ids == ["h1", "h2"]
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    assert c.search_image(buf.getvalue(), k=2, filter={"categories": ["shoes"]}).ids == ["s1", "s2"]
    assert c.more_like_these(["h1"], ["s1"], k=1).ids[0].startswith("h")
    assert len(c.trending(k=2, filter={"categories": ["shoes"], "in_stock": True, "attributes": {"colour": "red"}}
                          ).ids) == 2
    with pytest.raises(ValidationFailed):
        c.recommend("u1", k=0)


def test_client_errors(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    tc = make_client(auth=True)
    with pytest.raises(AuthError):
        Client(http=tc).trending()
    key, _ = create_key(sqlite_store, "reader", "read")
    with pytest.raises(Forbidden):
        Client(api_key=key, http=tc).send_events([{"user_id": "u", "item_id": "s1", "type": "view"}])

    def teapot(request: httpx.Request) -> httpx.Response:
        return httpx.Response(418, json={"error": {"code": "teapot", "message": "short and stout"}})

    with pytest.raises(ApiError) as e:
        Client(http=httpx.Client(transport=httpx.MockTransport(teapot), base_url="http://x")).trending()
    assert e.value.code == "teapot" and e.value.status == 418


def _capture(seen: list[httpx.Request]) -> Client:
    """A client whose requests are recorded and answered with an empty page."""
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [], "meta": {}})

    return Client(http=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://x"))


def test_exploration_zero_is_sent() -> None:
    seen: list[httpx.Request] = []
    c = _capture(seen)
    c.recommend("u1", exploration=0.0)  # 0 turns the variant's exploration off; None leaves it as the variant says
    c.recommend("u1")
    sent = [json.loads(r.content) for r in seen]
    assert sent[0]["exploration"] == 0.0
    assert not {"exploration", "boosts", "bury", "pins"} & sent[1].keys()


def test_trending_sends_a_list_filter_as_repeated_parameters(make_client: Callable[..., TestClient]) -> None:
    seen: list[httpx.Request] = []
    _capture(seen).trending(filter={"attributes": {"colour": ["red", "grey"], "size": "m"}, "categories": "shoes"})
    assert seen[0].url.params.get_list("attr") == ["colour:red", "colour:grey", "size:m"]
    assert seen[0].url.params.get_list("category") == ["shoes"]
    c = Client(http=make_client())
    red_or_grey = {"s1", "s3", "s5", "s7", *(f"h{i}" for i in range(1, 9))}
    assert set(c.trending(k=16, filter={"attributes": {"colour": ["red", "grey"]}}).ids) == red_or_grey
