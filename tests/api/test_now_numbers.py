"""A client's ``now`` is read as an event's timestamp is: ISO 8601 (naive = UTC) or unix seconds. Pydantic alone read
a number above 2e10 as milliseconds: ``99999999999`` became 1973 (then refused as "before the first event") and a
millisecond time was silently accepted, while the same numbers as an event's time were refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender

MILLIS = 1772352000000  # 2026-03-01T08:00:00Z in milliseconds
SECONDS = MILLIS // 1000
AT = datetime(2026, 3, 1, 8, 0)


@pytest.fixture
def seen(fake: FakeRecommender, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``now`` each personal list was asked for."""
    got: list[Any] = []
    real = fake.recommend

    def recommend(user_id: str, k: int = 20, **kw: Any) -> Any:
        got.append(kw.get("now"))
        return real(user_id, k, **kw)

    monkeypatch.setattr(fake, "recommend", recommend)
    return got


def _utc(when: Any) -> datetime:
    assert isinstance(when, datetime), when
    return when if when.tzinfo is None else when.astimezone(UTC).replace(tzinfo=None)


def _refusal(r: Any, where: str, *loc: str) -> str:
    """The message of a 422 about ``where``'s ``now`` (or ``loc``)."""
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    assert details[0]["loc"] == [where, *(loc or ("now",))], details
    return str(details[0]["msg"])


def test_milliseconds_are_refused_as_for_an_event(client: TestClient, seen: list[Any]) -> None:
    event = client.post("/v1/sessions/recommendations",
                        json={"events": [{"item_id": "h1", "type": "view", "timestamp": MILLIS}]})
    said = _refusal(event, "body", "events", "0", "timestamp")
    assert "divide by 1000" in said
    assert _refusal(client.post("/v1/users/u1/recommendations", json={"now": MILLIS}), "body") == said
    for r, where in [(client.get(f"/v1/users/u1/recommendations?now={MILLIS}"), "query"),
                     (client.post("/v1/users/u1/recommendations", json={"now": str(MILLIS)}), "body")]:
        assert "divide by 1000" in _refusal(r, where)
    assert seen == []


def test_a_number_past_2e10_is_not_read_as_1973(client: TestClient, seen: list[Any]) -> None:
    for r, where in [(client.get("/v1/users/u1/recommendations?now=99999999999"), "query"),
                     (client.post("/v1/users/u1/recommendations", json={"now": 99999999999}), "body")]:
        said = _refusal(r, where)
        assert "1970..2200" in said and "5138" in said and "1973" not in said, said
    assert seen == []


def test_unix_seconds_and_iso_are_the_same_now(client: TestClient, seen: list[Any]) -> None:
    for r in [client.get(f"/v1/users/u1/recommendations?now={SECONDS}"),
              client.post("/v1/users/u1/recommendations", json={"now": SECONDS}),
              client.post("/v1/users/u1/recommendations", json={"now": f"{SECONDS}.0"}),
              client.get("/v1/users/u1/recommendations", params={"now": "2026-03-01T10:00:00+02:00"}),
              client.post("/v1/users/u1/recommendations", json={"now": "2026-03-01T08:00:00"})]:
        assert r.status_code == 200, r.text
    assert [_utc(w) for w in seen] == [AT] * 5
    future = client.get("/v1/users/u1/recommendations?now=2099-01-01")  # a replay's time may lie ahead; no event may
    assert future.status_code == 200, future.text


def test_now_outside_the_stores_years_is_refused(client: TestClient) -> None:
    for q in ("1960-01-01", "2300-01-01", "-5"):
        assert "1970..2200" in _refusal(client.get(f"/v1/users/u1/recommendations?now={q}"), "query"), q


def test_the_openapi_docs_say_what_now_takes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    get = spec["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    param = next(p for p in get["parameters"] if p["name"] == "now")
    assert "unix seconds" in param["description"]
    assert {"type": "string", "format": "date-time"} in param["schema"]["anyOf"]
    body = spec["components"]["schemas"]["RecommendRequest"]["properties"]["now"]
    assert "unix seconds" in body["description"] and {"type": "string", "format": "date-time"} in body["anyOf"]


def test_buy_again_reads_now_as_the_personal_list_does(client: TestClient) -> None:
    assert "divide by 1000" in _refusal(client.get(f"/v1/users/u1/buy-again?now={MILLIS}"), "query")
    assert "1970..2200" in _refusal(client.get("/v1/users/u1/buy-again?now=99999999999"), "query")
    assert client.get(f"/v1/users/u1/buy-again?now={SECONDS}").status_code == 200
