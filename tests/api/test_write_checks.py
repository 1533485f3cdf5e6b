"""What the API says of writes it refuses: a body over the limit names the setting, an event time before 1970 once
in UTC and an absurd event value are per-record errors naming the field and the allowed range."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from recsys.store.importers.records import parse_ts


def _event(client: TestClient, **fields: object) -> dict[str, str]:
    body = {"events": [{"user_id": "w1", "item_id": "s1", "type": "purchase", **fields}]}
    r = client.post("/v1/events", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def test_an_event_time_before_1970_in_utc_is_refused_by_the_schema(client: TestClient) -> None:
    got = _event(client, timestamp="1970-01-01T00:30:00+01:00")
    assert got["status"] == "error", got
    assert got["error"] == ("timestamp: Value error, timestamp out of range (years 1970..2200 in UTC): "
                            "'1970-01-01T00:30:00+01:00' (1969-12-31T23:30:00 in UTC)"), got
    assert _event(client, timestamp="1970-01-01T01:30:00+01:00")["status"] == "stored"  # 00:30 UTC
    assert "datetime.datetime" not in _event(client, timestamp="0001-01-01T00:00:00+05:00")["error"]


def test_the_store_quotes_a_refused_time_as_iso_8601_not_a_python_repr() -> None:
    """POST /v1/events hands the store the schema's datetime: its refusal is what a client reads."""
    with pytest.raises(ValueError) as e:
        parse_ts(datetime(1970, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))))
    assert str(e.value) == ("timestamp out of range (years 1970..2200 in UTC): '1970-01-01T00:30:00+01:00' "
                            "(1969-12-31T23:30:00 in UTC)")


def test_an_absurd_event_value_is_refused_naming_the_range(client: TestClient) -> None:
    for value in (1e308, -1e308, 1.5e12):
        got = _event(client, value=value)
        assert got["status"] == "error" and got["error"].startswith("value: Value error, value "), got
        assert "must lie within -1e12..1e12" in got["error"], got
    assert _event(client, value=1e12, event_id="max")["status"] == "stored"
    r = client.post("/v1/sessions/recommendations", json={"events": [{"item_id": "s1", "type": "purchase",
                                                                      "value": 1e308}]})
    assert r.status_code == 422 and "-1e12..1e12" in r.text, r.text
