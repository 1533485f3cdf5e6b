"""What the hostile-client audit found: a lone surrogate in a record of a batch, an explorer form post from an opaque
(null) origin, and a filter naming very many values no item has."""

from __future__ import annotations

import html
import json
from collections.abc import Callable

from fastapi.testclient import TestClient
from httpx import Response

from recsys.api.routes._common import MAX_UNKNOWN_VALUES
from recsys.store import Store
from tests.api.test_filter_values_api import IndexedFake

JSON = {"content-type": "application/json"}


def _post(client: TestClient, path: str, body: str) -> Response:
    """``body`` sent as written: json= would refuse a lone surrogate before any request."""
    return client.post(path, content=body.encode(), headers=JSON)


def test_a_lone_surrogate_id_is_that_records_error_alone(client: TestClient) -> None:
    body = '{"items": [{"item_id": "fine-1", "title": "a fine item"}, {"item_id": "bad\\ud800", "title": "x"}]}'
    r = _post(client, "/v1/items", body)
    assert r.status_code == 200, r.text
    fine, bad = r.json()["results"]
    assert fine["status"] == "stored"
    assert bad["status"] == "error" and bad["item_id"] == "bad\\ud800"  # escaped: the answer can be encoded
    assert "lone surrogate" in bad["error"] and bad["error"].startswith("item_id")
    assert client.get("/v1/items/fine-1").status_code == 200


def test_a_lone_surrogate_elsewhere_is_a_clear_refusal(client: TestClient) -> None:
    """Events name it per record; ids in a list's request get a 422 saying so; an item's attribute value (a plain
    string, which pydantic let through) is refused instead of stored and then unreadable."""
    r = _post(client, "/v1/events", '{"events": [{"user_id": "u\\ud800", "item_id": "s1", "type": "click"}]}')
    assert r.status_code == 200 and "lone surrogate" in r.json()["results"][0]["error"]
    for body in ('{"k": 3, "exclude": ["s\\ud800"]}', '{"k": 3, "pins": {"s\\ud800": 1}}'):
        r = _post(client, "/v1/users/u1/recommendations", body)
        assert r.status_code == 422 and "lone surrogate" in r.text, (body, r.text)
    r = _post(client, "/v1/items", '{"items": [{"item_id": "fine-2", "attributes": {"k": "v\\ud800"}}]}')
    assert r.json()["results"][0]["status"] == "error", r.text
    assert client.get("/v1/items/fine-2").status_code == 404


def test_a_form_post_from_a_null_origin_is_said_to_be_one(make_client: Callable[..., TestClient]) -> None:
    client = make_client(auth=True)
    like = {"user_id": "u1", "item_id": "h2", "type": "like"}
    for c, path in ((client, "/logout"), (make_client(), "/feedback")):  # auth off: the origin is what refuses it
        r = c.post(path, data=like if path == "/feedback" else None, headers={"Origin": "null"},
                   follow_redirects=False)
        said = html.unescape(r.text)
        assert r.status_code == 403 and "opaque 'null' origin" in said and "no Origin header" not in said, said
    r = TestClient(client.app).post("/logout", follow_redirects=False)  # none at all: still said as before
    assert r.status_code == 403 and "no Origin header" in html.unescape(r.text)


def test_many_unknown_filter_values_are_capped(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    client = make_client(IndexedFake(sqlite_store))
    attributes = {f"nokey{a}": [f"v{a}-{v}" for v in range(1000)] for a in range(10)}
    body = {"k": 5, "filter": {"categories": ["hatz"], "attributes": {"colour": ["gren"], **attributes}}}
    r = client.post("/v1/users/u1/recommendations", json=body)
    assert r.status_code == 200, r.text
    meta = r.json()["meta"]
    listed = meta["unknown_filter_values"]
    assert len(listed) == MAX_UNKNOWN_VALUES and meta["unknown_filter_values_more"] == 10_002 - MAX_UNKNOWN_VALUES
    assert listed[:2] == [{"field": "category", "value": "hatz", "closest": ["hats"]},
                          {"field": "attributes.colour", "value": "gren", "closest": ["grey"]}]
    assert len(json.dumps(meta)) < 5000
    few = client.post("/v1/users/u1/recommendations", json={"k": 5, "filter": {"categories": ["hatz"]}}).json()
    assert "unknown_filter_values_more" not in few["meta"] and len(few["meta"]["unknown_filter_values"]) == 1
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Meta"]["properties"]
    assert "unknown_filter_values_more" in schema and "20" in schema["unknown_filter_values"]["description"]
