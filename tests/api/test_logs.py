"""Structured logs with request ids; a bug is a JSON 500 that leaks nothing, logged with its request id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from recsys.api.logs import JsonFormatter, RequestIdFilter
from recsys.api.testing import FakeRecommender
from tests.api.conftest import CATALOGUE


@contextmanager
def json_log(logger: str, level: int) -> Iterator[io.StringIO]:
    """What the server's handler (``recsys.api.logs.configure``) writes for ``logger``."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(logger)
    old = log.level
    log.addHandler(handler)
    log.setLevel(level)
    try:
        yield buf
    finally:
        log.removeHandler(handler)
        log.setLevel(old)


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_access_log_is_json_with_request_id(client: TestClient) -> None:
    with json_log("recsys.api.access", logging.INFO) as buf:
        client.get("/v1/trending?k=2", headers={"X-Request-ID": "req-42"})
    (line,) = _lines(buf)
    assert line["request_id"] == "req-42" and line["status"] == 200 and line["route"] == "/v1/trending"
    assert line["method"] == "GET" and line["duration_ms"] >= 0 and line["level"] == "info"


class Broken(FakeRecommender):
    def trending(self, k: int = 20, *, filter: Any = None) -> Any:
        raise RuntimeError("secret internals")


def test_bug_is_a_json_500_logged_with_request_id(make_client: Callable[..., TestClient], sqlite_store: Any) -> None:
    c = make_client(Broken(sqlite_store, CATALOGUE))
    with json_log("recsys.api.errors", logging.ERROR) as buf:
        r = c.get("/v1/trending", headers={"X-Request-ID": "bug-1"})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal" and "secret" not in r.text
    assert r.json()["error"]["request_id"] == "bug-1"
    (line,) = _lines(buf)
    assert line["request_id"] == "bug-1" and "RuntimeError: secret internals" in line["exc"]
    assert c.get("/healthz").status_code == 200  # the server carries on


def test_uvicorns_terminal_colour_copy_stays_out_of_the_json_line() -> None:
    with json_log("uvicorn.error", logging.INFO) as buf:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 7,
                                                extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
    line = json.loads(buf.getvalue().splitlines()[-1])
    assert line["msg"] == "Started server process [7]" and "color_message" not in line


def test_a_path_cannot_forge_a_log_line_nor_a_method_a_metrics_series(client: TestClient) -> None:
    with json_log("recsys.api.access", logging.INFO) as buf:
        client.get("/x%0A2026-12-06 00:00:00,000 INFO recsys.api.access POST /v1/items 200")
        for n in range(3):
            client.request(f"M{n:06d}", "/x")
    first, *made_up = _lines(buf)
    assert "\n" not in first["path"] and first["path"].startswith("/x\\x0a2026")
    assert [line["method"] for line in made_up] == ["other"] * 3
    metrics = client.get("/metrics").text
    assert "M000001" not in metrics and 'method="other"' in metrics
