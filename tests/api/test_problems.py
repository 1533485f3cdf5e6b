"""Errors as RFC 9457 problems (application/problem+json) that keep the ``error`` object and the stable code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender

MEMBERS = {"type", "title", "status", "detail", "instance", "code", "request_id", "error"}


def _problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    body: dict[str, Any] = r.json()
    assert set(body) >= MEMBERS, body
    assert body["status"] == status and body["code"] == code == body["error"]["code"]
    assert body["type"] == f"urn:recsys:problem:{code}" and body["title"]
    assert body["detail"] == body["error"]["message"] and body["request_id"] == r.headers["x-request-id"]
    return body


def test_every_kind_of_error_is_a_problem(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_body_bytes=200)
    body = _problem(c.post("/v1/users/u1/recommendations", json={"k": 0}), 422, "invalid")
    assert body["instance"] == "/v1/users/u1/recommendations" and body["error"]["details"][0]["loc"]
    _problem(c.get("/no/such/route"), 404, "not_found")  # the router's own 404
    _problem(c.delete("/v1/trending"), 405, "method_not_allowed")
    _problem(c.post("/v1/events", content=b"x" * 300, headers={"content-type": "application/json"}), 413,
             "too_large")  # answered by the middleware, before any route
    titles = {_problem(c.get(f"/v1/items/{i}"), 404, "unknown_item")["title"] for i in ("a", "b")}
    assert titles == {"Unknown item"}  # a title names the kind of problem, not the occurrence


def test_rate_limited_problem(make_client: Callable[..., TestClient]) -> None:
    c = make_client(rate_limit_per_minute=1, rate_limit_strategy="moving-window")
    assert c.get("/v1/trending").status_code == 200
    r = c.get("/v1/trending")
    _problem(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1 and r.headers["ratelimit-remaining"] == "0"


class Broken(FakeRecommender):
    def trending(self, k: int = 20, *, filter: Any = None) -> list[Any]:
        raise RuntimeError("secret detail at /srv/data")


def test_unexpected_error_is_a_problem(make_client: Callable[..., TestClient], fake: FakeRecommender) -> None:
    c = make_client(recommender=Broken(fake.store, []))
    body = _problem(c.get("/v1/trending"), 500, "internal")
    assert "secret" not in str(body) and "/srv" not in str(body)
