"""GET/POST /v1/search/text pass the search mode and the lexical weight through, and refuse bad ones."""

from __future__ import annotations

from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender


def test_mode_and_weight_reach_the_service(client: TestClient, fake: FakeRecommender) -> None:
    assert client.get("/v1/search/text", params={"q": "wool hat"}).status_code == 200
    assert fake.last_search == {"mode": None, "lexical_weight": None}  # the service's default (hybrid)
    r = client.get("/v1/search/text", params={"q": "wool hat", "mode": "lexical", "lexical_weight": 0.3})
    assert r.status_code == 200 and fake.last_search == {"mode": "lexical", "lexical_weight": 0.3}
    r = client.post("/v1/search/text", json={"query": "shoe", "mode": "vector", "lexical_weight": 1})
    assert r.status_code == 200 and fake.last_search == {"mode": "vector", "lexical_weight": 1.0}
    assert client.post("/v1/search/text", json={"query": "shoe"}).status_code == 200
    assert fake.last_search == {"mode": None, "lexical_weight": None}


def test_bad_mode_and_weight_are_422(client: TestClient) -> None:
    for params in ({"mode": "fuzzy"}, {"lexical_weight": 2}, {"lexical_weight": -0.1}, {"lexical_weight": "nan"}):
        assert client.get("/v1/search/text", params={"q": "hat", **params}).status_code == 422, params
        body = {"query": "hat", **params}
        assert client.post("/v1/search/text", json=body).status_code == 422, params


def test_openapi_documents_the_modes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/v1/search/text"]["get"]["parameters"]}
    assert {"mode", "lexical_weight"} <= set(params)
    assert "hybrid" in str(params["mode"]["schema"])
