"""The API names filter values no item has (``meta.unknown_filter_values``, like ``meta.unknown_items`` for rules)
on every route that filters, and the image search refuses query-string options it would have ignored."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender
from recsys.index import ItemMeta
from recsys.store import Store
from tests.api.conftest import CATALOGUE
from tests.api.test_feedback import _png

TYPO = [{"field": "category", "value": "hatz", "closest": ["hats"]}]


class IndexedFake(FakeRecommender):
    """The fake with an index's metadata, as the real service serves (its filters stay the fake's own)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, CATALOGUE)
        self.index = SimpleNamespace(meta=ItemMeta.build(
            [it["item_id"] for it in CATALOGUE], category=[it["category"] for it in CATALOGUE],
            attributes=[it["attributes"] for it in CATALOGUE]))


def _meta(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()["meta"]  # type: ignore[no-any-return]


def test_every_filtering_route_names_a_value_no_item_has(make_client: Callable[..., TestClient],
                                                         sqlite_store: Store) -> None:
    client = make_client(IndexedFake(sqlite_store))
    body = {"filter": {"categories": ["hatz"]}}
    answers = {
        "recommend GET": client.get("/v1/users/u1/recommendations?category=hatz"),
        "recommend POST": client.post("/v1/users/u1/recommendations", json=body),
        "session": client.post("/v1/sessions/recommendations", json={"events": [{"item_id": "h1", "type": "view"}],
                                                                     **body}),
        "more like these": client.post("/v1/more-like-these", json={"positive": {"h1": 1.0}, **body}),
        "trending": client.get("/v1/trending?category=hatz"),
        "similar GET": client.get("/v1/items/h1/similar?category=hatz"),
        "similar POST": client.post("/v1/items/h1/similar", json=body),
        "search GET": client.get("/v1/search/text?q=hat&category=hatz"),
        "search POST": client.post("/v1/search/text", json={"query": "hat", **body}),
        "image": client.post("/v1/search/image", files={"image": ("q.png", _png(), "image/png")},
                             data={"filter": '{"categories": ["hatz"]}'}),
    }
    for name, r in answers.items():
        assert _meta(r).get("unknown_filter_values") == TYPO, name
    attr = _meta(client.get("/v1/search/text?q=hat&attr=colour:GREY&attr=colour:gren&attr=colur:red"))
    assert attr["unknown_filter_values"] == [
        {"field": "attributes.colour", "value": "gren", "closest": ["grey"]},
        {"field": "attributes.colur", "value": "red", "closest": [], "closest_fields": ["attributes.colour"]}]
    for known in ("category=hats", "category=HATS", "attr=colour:Red", "price_max=10"):
        assert "unknown_filter_values" not in _meta(client.get(f"/v1/trending?{known}")), known
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Meta"]["properties"]
    assert "unknown_filter_values" in schema


def test_image_search_refuses_query_options(client: TestClient) -> None:
    """``?k=6`` was ignored (20 items came back) and ``?bogus=1`` accepted: the options are form fields."""
    upload = {"image": ("q.png", _png(), "image/png")}
    for query in ("k=6", "k=3&bogus=1", "filter=%7B%7D"):
        r = client.post(f"/v1/search/image?{query}", files=upload)
        assert r.status_code == 422, (query, r.text)
        details = r.json()["error"]["details"]
        assert details[0]["loc"][0] == "query" and "form fields" in details[0]["msg"], details
    assert len(client.post("/v1/search/image?_=17", files=upload, data={"k": "2"}).json()["items"]) == 2
