"""Every endpoint over the fake service: shapes, filters, exclusions, errors as JSON with stable codes."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from PIL import Image

from recsys.api.testing import FakeRecommender


def _ids(r) -> list[str]:  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return [it["item_id"] for it in r.json()["items"]]


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] and r.json()["index_generation"] == "gen-1"
    client.get("/v1/trending")
    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'recsys_http_requests_total{method="GET",route="/v1/trending",status="200"} 1.0' in m.text
    assert "recsys_ready 1.0" in m.text


def test_request_id_echoed_and_in_errors(client: TestClient) -> None:
    r = client.get("/v1/items/nope", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "abc-123"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {  # RFC 9457, and the error object clients relied on before
        "type": "urn:recsys:problem:unknown_item", "title": "Unknown item", "status": 404,
        "detail": "unknown item id 'nope'", "instance": "/v1/items/nope", "code": "unknown_item",
        "request_id": "abc-123",
        "error": {"code": "unknown_item", "message": "unknown item id 'nope'", "request_id": "abc-123"}}
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert generated != "bad id with spaces" and len(generated) == 32


def test_items_crud_and_bulk(client: TestClient) -> None:
    assert client.get("/v1/items/s1").json()["category"] == "shoes"
    r = client.put("/v1/items/n1", json={"title": "new boot", "category": "shoes", "price": 12.5})
    assert r.status_code == 200 and r.json()["title"] == "new boot"
    r = client.post("/v1/items", json={"items": [{"item_id": "n2", "title": "cap"}, {"item_id": "n1", "title": "x"}]})
    assert [x["status"] for x in r.json()["results"]] == ["stored", "stored"]
    assert client.delete("/v1/items/n2").json() == {"item_id": "n2", "deleted": True}
    assert client.get("/v1/items/n2").json()["error"]["code"] == "unknown_item"
    assert client.delete("/v1/items/n2").status_code == 404


def test_item_validation(client: TestClient) -> None:
    for body in ({"price": "cheap"}, {"unknown_field": 1}, {"attributes": {"a": {"nested": 1}}},
                 {"title": "a\x00b"}):
        r = client.put("/v1/items/x", json=body)
        assert r.status_code == 422, body
        assert r.json()["error"]["code"] == "invalid" and r.json()["error"]["details"]
    assert client.post("/v1/items", json={"items": []}).status_code == 422
    items = [{"item_id": "g1", "title": "ok"}, {"item_id": "g2", "price": "NaN"}, {"title": "no id"},
             {"item_id": "g3", "colour": "red"}]
    mixed = client.post("/v1/items", json={"items": items})
    assert mixed.status_code == 200, mixed.text
    res = mixed.json()["results"]
    assert [x["status"] for x in res] == ["stored", "error", "error", "error"]
    assert res[1]["item_id"] == "g2" and res[1]["error"].startswith("price:")
    assert res[2]["error"].startswith("item_id: Field required") and res[3]["error"].startswith("colour:")
    assert client.get("/v1/items/g1").status_code == 200 and client.get("/v1/items/g2").status_code == 404
    r = client.post("/v1/items", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("the request body is not valid JSON")
    r = client.post("/v1/items", content=b'{"items": [{"item_id": "t1"}]}', headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "Content-Type: application/json (got text/plain)" in r.json()["detail"], r.text
    r = client.post("/v1/items", content=b'{"items": [{"item_id": "\xff"}]}',
                    headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and "JSON" in r.json()["detail"], r.text
    r = client.post("/v1/items", content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"], r.text
    r = client.post("/v1/events", content=b'{"events": [{"value": ' + b"1" * 5000 + b"}]}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "more than 4,300 digits" in r.json()["detail"], r.text


def test_ids_that_would_name_another_record_or_no_path_are_refused(client: TestClient) -> None:
    """Ids are stored trimmed, so " s1" would write to s1 (and be read back as unknown), and an id with "/" could
    never be addressed in /v1/items/{id}: both are refused where they would create or write a record."""
    assert client.put("/v1/items/s1%20", json={"title": "other"}).status_code == 422
    assert client.get("/v1/items/s1").json()["title"] != "other"
    assert client.get("/v1/users/%20u1/recommendations").status_code == 422
    res = client.post("/v1/items", json={"items": [{"item_id": " s2", "price": 1.0}, {"item_id": "sku/42"},
                                                   {"item_id": "sku-42"}, {"item_id": ".."}]}).json()["results"]
    assert [x["status"] for x in res] == ["error", "error", "stored", "error"]
    assert "whitespace" in res[0]["error"] and "'/'" in res[1]["error"] and "'..'" in res[3]["error"]
    ev = client.post("/v1/events", json={"events": [{"user_id": "u1 ", "item_id": "s1", "type": "view"},
                                                    {"user_id": "a/b", "item_id": "s1", "type": "view"}]}).json()
    assert [x["status"] for x in ev["results"]] == ["error", "error"]


def test_events_per_event_results_and_idempotency(client: TestClient) -> None:
    body = {"events": [
        {"user_id": "u1", "item_id": "s1", "type": "like", "event_id": "e1"},
        {"user_id": "u1", "item_id": "missing", "type": "view"},
        {"user_id": "u1", "item_id": "s2", "type": "purchase", "timestamp": "2024-05-01T10:00:00Z"},
    ]}
    r = client.post("/v1/events", json=body).json()
    assert [x["status"] for x in r["results"]] == ["stored", "error", "stored"]
    assert (r["stored"], r["duplicates"], r["errors"]) == (2, 0, 1)
    again = client.post("/v1/events", json={"events": body["events"][:1]}).json()
    assert again["results"][0]["status"] == "duplicate"
    # a record that breaks the schema is refused alone, with what is wrong; the others are stored
    mixed = client.post("/v1/events", json={"events": [
        {"user_id": "u1", "item_id": "s1", "type": "teleport"}, {"user_id": "u1", "item_id": "s3", "type": "like"},
        {"user_id": "u1", "item_id": "s1", "type": "view", "value": "NaN"}, "not an event",
        {"item_id": "s1", "type": "view"}]})
    assert mixed.status_code == 200, mixed.text
    res = mixed.json()["results"]
    assert [x["status"] for x in res] == ["error", "stored", "error", "error", "error"]
    assert [x["index"] for x in res] == [0, 1, 2, 3, 4] and mixed.json()["stored"] == 1
    assert res[0]["error"].startswith("type: Input should be") and res[2]["error"].startswith("value:")
    assert "object" in res[3]["error"] and res[4]["error"].startswith("user_id: Field required")
    for body in ({"events": []}, {"events": "x"}, {"other": 1}):  # the batch itself is still checked whole
        assert client.post("/v1/events", json=body).status_code == 422
    schemas = client.get("/openapi.json").json()["components"]["schemas"]  # the docs still show each record
    assert {"user_id", "item_id", "type"} <= set(schemas["EventBatch"]["properties"]["events"]["items"]["properties"])
    assert "item_id" in schemas["ItemBatch"]["properties"]["items"]["items"]["properties"]


def test_event_times_are_unix_seconds_and_never_far_in_the_future(client: TestClient) -> None:
    """A number is unix seconds, as in files (pydantic alone read 99999999999 as milliseconds: 1973); a time more
    than a day ahead of the clock is refused, since it would become the user's "now" (every trend window empty)."""
    from datetime import UTC, datetime, timedelta

    def post(ts: object) -> dict[str, str]:
        body = {"events": [{"user_id": "t1", "item_id": "s1", "type": "view", "timestamp": ts}]}
        return client.post("/v1/events", json=body).json()["results"][0]

    assert post(1_700_000_000)["status"] == "stored" and post("1700000001")["status"] == "stored"
    far = post(99_999_999_999)
    assert far["status"] == "error" and "out of range" in far["error"], far
    for text in ("99999999999.5", "1764583200000.0"):  # decimal text too: never milliseconds (1973, 2025)
        got = post(text)
        assert got["status"] == "error" and "out of range" in got["error"], (text, got)
    assert "milliseconds" in post(1_764_583_200_000)["error"]
    assert post("1700000002.5")["status"] == "stored"
    edge = post("0001-01-01T00:00:00+05:00")  # before year 1 once in UTC
    assert edge["status"] == "error" and "out of range" in edge["error"], edge
    ahead = post((datetime.now(UTC) + timedelta(days=3)).isoformat())
    assert ahead["status"] == "error" and "in the future" in ahead["error"], ahead
    assert post((datetime.now(UTC) + timedelta(hours=1)).isoformat())["status"] == "stored"  # clock skew


def test_recommendations_live_feedback(client: TestClient) -> None:
    cold = client.get("/v1/users/u9/recommendations?k=5").json()
    assert all(it["sources"] == ["popular"] for it in cold["items"])
    events = [{"user_id": "u9", "item_id": f"h{i}", "type": "like"} for i in (1, 2, 3)]
    assert client.post("/v1/events", json={"events": events}).json()["stored"] == 3
    warm = client.get("/v1/users/u9/recommendations?k=5").json()["items"]
    assert all(it["item_id"].startswith("h") for it in warm)


def test_recommendation_filters_exclusions_explain_debug(client: TestClient) -> None:
    client.post("/v1/events", json={"events": [{"user_id": "u1", "item_id": "s1", "type": "like"}]})
    ids = _ids(client.get("/v1/users/u1/recommendations", params={
        "k": 3, "category": "shoes", "price_min": 20, "in_stock": "true", "exclude": ["s2"], "attr": "colour:blue"}))
    assert ids == ["s4", "s8"]
    r = client.post("/v1/users/u1/recommendations", json={
        "k": 2, "filter": {"categories": ["shoes"], "price_max": 30}, "exclude": ["s3"], "diversity": 0.5,
        "explain": True, "debug": True}).json()
    assert [it["item_id"] for it in r["items"]] == ["s1", "s2"]
    assert r["items"][0]["explanation"]["because"] == "shoes"
    assert {"candidates", "ranking", "rules", "service_total"} <= set(r["debug"]["timings_ms"])
    assert r["meta"]["index_generation"] == "gen-1" and r["meta"]["ranker_version"] == "fake-ranker"
    for bad in ({"k": 0}, {"k": 100000}, {"diversity": 2}, {"filter": {"price_min": 5, "price_max": 1}},
                {"filter": {"categories": "shoes"}}, {"filter": {"price_min": "NaN"}}):
        r = client.post("/v1/users/u1/recommendations", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert client.get("/v1/users/u1/recommendations?price_min=5&price_max=1").status_code == 422
    assert client.get("/v1/users/u1/recommendations?attr=novalue").status_code == 422


def test_session_recommendations_store_nothing(client: TestClient, fake: FakeRecommender) -> None:
    r = client.post("/v1/sessions/recommendations", json={
        "events": [{"item_id": "h1", "type": "click"}, {"item_id": "h2", "type": "like"}], "k": 3})
    assert all(i.startswith("h") for i in _ids(r))
    assert not fake.events
    assert client.post("/v1/sessions/recommendations", json={"events": []}).status_code == 422
    assert "unknown_items" not in r.json()["meta"]
    # items the catalogue lacks are named, not silently dropped; a body's now / shown window is refused, not ignored
    r = client.post("/v1/sessions/recommendations", json={
        "events": [{"item_id": "nope-1", "type": "click"}, {"item_id": "h2", "type": "like"},
                   {"item_id": "nope-1", "type": "view"}], "k": 3})
    assert r.status_code == 200 and r.json()["meta"]["unknown_items"] == ["nope-1"]
    for extra in ({"now": "2026-01-01T00:00:00Z"}, {"exclude_shown_hours": 2}):
        r = client.post("/v1/sessions/recommendations", json={"events": [{"item_id": "h1", "type": "click"}],
                                                              **extra})
        assert r.status_code == 422 and "session" in r.json()["detail"], r.text


def test_similar_search_more_like_these_trending(client: TestClient) -> None:
    assert all(i.startswith("s") for i in _ids(client.get("/v1/items/s1/similar?k=3")))
    assert "s1" not in _ids(client.post("/v1/items/s1/similar", json={"k": 20, "modality": "image"}))
    assert client.get("/v1/items/zzz/similar").json()["error"]["code"] == "unknown_item"
    assert client.get("/v1/items/s1/similar?modality=smell").status_code == 422
    assert all(i.startswith("h") for i in _ids(client.get("/v1/search/text", params={"q": "wool hat", "k": 4})))
    assert _ids(client.post("/v1/search/text", json={"query": "shoe", "filter": {"price_max": 20}})) == ["s1", "s2"]
    assert client.get("/v1/search/text").status_code == 422
    r = client.post("/v1/more-like-these", json={"positive": {"h1": 1.0}, "negative": {"s1": 0.5}, "k": 3})
    assert all(i.startswith("h") for i in _ids(r))
    assert client.post("/v1/more-like-these", json={"positive": {"h1": -1}}).status_code == 422
    assert client.post("/v1/more-like-these", json={"positive": {"nope": 1}}).status_code == 404
    assert len(_ids(client.get("/v1/trending?k=4&category=hats"))) == 4


def _png(size: tuple[int, int] = (16, 16), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format=fmt)
    return buf.getvalue()


def test_search_image(client: TestClient) -> None:
    r = client.post("/v1/search/image", files={"image": ("q.png", _png(), "image/png")},
                    data={"k": "3", "filter": '{"categories": ["hats"]}'})
    assert _ids(r) == ["h1", "h2", "h3"]
    r = client.post("/v1/search/image", files={"image": ("q.png", _png(), "image/png")}, data={"filter": "{bad"})
    assert r.status_code == 422
    assert client.post("/v1/search/image", data={"k": "3"}).status_code == 422


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/v2/nothing").json()["error"]["code"] == "not_found"
    r = client.delete("/v1/trending")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_new_generation_picked_up_without_restart(client: TestClient, fake: FakeRecommender) -> None:
    assert client.get("/v1/trending").json()["meta"]["index_generation"] == "gen-1"
    fake.pending_generation = "gen-2"
    client.app.state.runtime.tick()  # what the background task does every second
    assert client.get("/v1/trending").json()["meta"]["index_generation"] == "gen-2"
    assert client.get("/readyz").json()["index_generation"] == "gen-2"


def test_openapi_is_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/v1/items/{item_id}", "/v1/items", "/v1/events", "/v1/users/{user_id}/recommendations",
            "/v1/sessions/recommendations", "/v1/items/{item_id}/similar", "/v1/search/text", "/v1/search/image",
            "/v1/more-like-these", "/v1/trending", "/healthz", "/readyz", "/metrics"} <= paths
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])


def test_openapi_documents_errors_and_operation_ids(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ops = [(path, op) for path, item in spec["paths"].items() for op in item.values()]
    ids = [op["operationId"] for _, op in ops]
    assert len(ids) == len(set(ids)) and "recommend" in ids and "put_item" in ids  # stable, readable names
    for path, op in ops:
        assert {"400", "401", "404", "422", "429", "503"} <= set(op["responses"]), (path, op["responses"].keys())
        media = "application/json" if path == "/readyz" else "application/problem+json"
        model = op["responses"]["503"]["content"][media]["schema"]["$ref"]
        assert model.endswith("Readiness" if path == "/readyz" else "ErrorResponse"), (path, model)
        assert all("application/json" not in op["responses"][code].get("content", {}) for code in ("401", "429"))


def test_api_docs_use_local_assets_only(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "cdn" not in r.text.lower() and "https://" not in r.text
        assert "img-src 'self' data:" in r.headers["content-security-policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert client.get(f"/docs/assets/{asset}").status_code == 200


def test_the_post_body_checks_rule_keys_as_the_query_string_does(client: TestClient) -> None:
    for body in ({"bury": [""]}, {"bury": ["a\u0000b"]}, {"bury": ["x" * 100_000]}, {"boosts": {"k" * 5000: 1.0}},
                 {"pins": {"a\u0007": 2}}):
        r = client.post("/v1/users/u1/recommendations", json={"k": 3, **body})
        assert r.status_code == 422, (body, r.text)
    assert client.get("/v1/users/u1/recommendations", params=[("boost", "s1=1"), ("boost", "s1=2")]).status_code == 422
