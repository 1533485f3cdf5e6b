"""Filter values on the real service (the session's built e2e demo): a value differing in case or spaces finds what
the catalogue's spelling finds, on recommendations and search alike, and a value no item has is named in
``meta.unknown_filter_values`` with the closest known ones (H&M's "Dress": ``category=dress`` served nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api import create_app
from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = pytest.mark.slow  # the session's e2e demo build (shared with the notebook and browser tests)


@pytest.fixture
def client(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[TestClient]:
    built, _ = built_demo(tmp_path_factory)
    with TestClient(create_app(e2e_settings(private_home(built, tmp_path / "home"))),
                    raise_server_exceptions=False) as c:
        yield c


def _body(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _ids(r: Any) -> list[str]:
    return [it["item_id"] for it in _body(r)["items"]]


def test_case_and_spaces_do_not_matter(client: TestClient) -> None:
    routes = ["/v1/users/user-0001/recommendations?k=5&category={c}", "/v1/trending?k=5&category={c}",
              "/v1/search/text?q=summer&k=5&category={c}"]
    for route in routes:
        exact = _ids(client.get(route.format(c="dress")))
        assert exact, route
        for spelt in ("Dress", "DRESS", "%20dress%20"):
            body = _body(client.get(route.format(c=spelt)))
            assert [it["item_id"] for it in body["items"]] == exact, (route, spelt)
            assert "unknown_filter_values" not in body["meta"]
    posted = client.post("/v1/search/text", json={"query": "summer", "k": 5, "filter": {"categories": ["DRESS"]}})
    assert _ids(posted) == _ids(client.get("/v1/search/text?q=summer&k=5&category=dress"))
    linen = _ids(client.get("/v1/search/text?q=dress&k=5&attr=material:linen"))
    assert linen and _ids(client.get("/v1/search/text?q=dress&k=5&attr=material:LINEN")) == linen


def test_a_value_no_item_has_is_named(client: TestClient) -> None:
    body = _body(client.get("/v1/users/user-0001/recommendations?k=5&category=dres&category=hat"))
    assert body["meta"]["unknown_filter_values"] == [{"field": "category", "value": "dres", "closest": ["dress"]}]
    assert body["items"]  # the hats still come
    search = _body(client.get("/v1/search/text?q=dress&k=5&attr=material:linnen"))
    assert search["items"] == []
    assert search["meta"]["unknown_filter_values"] == [
        {"field": "attributes.material", "value": "linnen", "closest": ["linen"]}]
