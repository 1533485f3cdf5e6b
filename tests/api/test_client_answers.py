"""How the clients read answers that are not the expected one: a write with no answer (maybe applied), a proxy's
502/504 page, a 422 with several fields, Retry-After on StoreBusy, 503 ``encoder``, and connect errors that waiting
does not heal."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from recsys.client import ApiError, Client, Unreachable
from recsys.errors import EncoderStorageError, RateLimited, StoreBusy, ValidationFailed
from tests.api.mock_transport import MockServer
from tests.conftest import run_async

PAGE = {"items": [], "meta": {}, "results": []}
EVENT = {"user_id": "u", "item_id": "a", "type": "view"}


class Answers(MockServer):
    """A transport answering from a list (a response, or an exception to raise), then 200 with a page."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        super().__init__()
        self.answers = list(answers)
        self.seen: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        answer = self.answers.pop(0) if self.answers else httpx.Response(200, json=PAGE)
        if isinstance(answer, Exception):
            raise answer
        return answer



WRITES: dict[str, Callable[[Any], Any]] = {
    "send_events": lambda c: c.send_events([EVENT]), "upsert_items": lambda c: c.upsert_items([{"item_id": "a"}]),
    "put_item": lambda c: c.put_item("a", {"title": "t"}), "delete_item": lambda c: c.delete_item("a"),
    "delete_user": lambda c: c.delete_user("u")}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_write_that_timed_out_may_have_been_applied(name: str) -> None:
    with pytest.raises(Unreachable) as e:
        WRITES[name](Answers(httpx.ReadTimeout("read timed out")).client())
    assert e.value.maybe_applied is True
    assert "may have applied it" in e.value.message and "same event_id are stored once" in e.value.message

    server = Answers(httpx.RemoteProtocolError("Server disconnected"))

    async def run() -> None:
        async with server.async_client() as c:
            await WRITES[name](c)

    if name in ("upsert_items", "put_item", "delete_item"):  # idempotent: a lost connection is tried again
        run_async(run())
        assert len(server.seen) == 2
        return
    with pytest.raises(Unreachable) as e:
        run_async(run())
    assert e.value.maybe_applied is True and "lost its connection" in e.value.message and len(server.seen) == 1


def test_a_read_or_a_write_never_sent_is_not_maybe_applied() -> None:
    with pytest.raises(Unreachable) as e:
        Answers(httpx.ReadTimeout("read timed out")).client().recommend("u1")  # a POST that stores nothing
    assert e.value.maybe_applied is False and "overloaded?" in e.value.message
    with pytest.raises(Unreachable) as e:
        Answers(*[httpx.ConnectError("[Errno 111] Connection refused")] * 4).client().send_events([EVENT])
    assert e.value.maybe_applied is False and "is the recsys server running" in e.value.message


def _html(status: int) -> httpx.Response:
    return httpx.Response(status, text=f"<html><body><h1>{status} Bad Gateway</h1>nginx</body></html>",
                          headers={"content-type": "text/html"})


def test_a_proxys_error_page_is_a_bad_response_naming_the_request() -> None:
    s = Answers(*[_html(502)] * 4)
    with pytest.raises(ApiError) as e:
        s.client().trending()
    assert e.value.code == "bad_response" and e.value.status == 502
    for part in ("GET /v1/trending", "HTTP 502", "text/html", "Bad Gateway", "proxy or load balancer"):
        assert part in e.value.message
    assert len(s.seen) == 4 and s.waits == [0.5, 1.0, 2.0]  # retried like a 503
    with pytest.raises(ApiError) as e:
        Answers(httpx.Response(404, json={"detail": "Not Found"})).client().get_item("a")
    assert e.value.code == "bad_response" and "GET /v1/items/a answered HTTP 404" in e.value.message


def test_a_proxys_502_or_504_is_retried_only_where_a_second_try_does_no_harm() -> None:
    s = Answers(_html(504), _html(502))
    assert s.client().upsert_items([{"item_id": "a"}]) == [] and len(s.seen) == 3  # upserts
    s = Answers(_html(504))
    assert s.client().send_events([{**EVENT, "event_id": "e1"}]) == [] and len(s.seen) == 2  # stored once
    s = Answers(_html(504))  # events without ids would be stored twice
    with pytest.raises(ApiError, match="HTTP 504"):
        s.client().send_events([EVENT])
    assert len(s.seen) == 1
    s = Answers(_html(504), _html(502))
    assert s.client().delete_item("a") is None and len(s.seen) == 3  # a delete repeated is harmless


def test_a_validation_error_keeps_every_field(make_client: Callable[..., TestClient]) -> None:
    with pytest.raises(ValidationFailed) as e:
        Client(http=make_client()).recommend("u1", k=0, diversity=5.0, exploration=-1)
    details = e.value.details  # type: ignore[attr-defined]
    assert [d["loc"][-1] for d in details] == ["k", "diversity", "exploration"]
    assert e.value.message.startswith("3 problems: body.k: ")
    assert "body.diversity" in e.value.message and "body.exploration" in e.value.message


def _problem(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(status, headers=headers, json={"error": {"code": code, "message": "no", "request_id": "r"}})


def test_retry_after_reaches_the_error_and_codes_map_by_status() -> None:
    with pytest.raises(StoreBusy) as busy:
        Answers(_problem(503, "store_busy", "100")).client().trending()  # beyond the budget: raised at once
    assert busy.value.retry_after == 100 and "come back in 100 s" in busy.value.message  # type: ignore[attr-defined]
    with pytest.raises(EncoderStorageError):
        Answers(_problem(503, "encoder")).client().trending()
    s = Answers(*[_problem(429, "rate_limited", "1.5")] * 4)
    with pytest.raises(RateLimited) as limited:
        s.client().trending()
    assert s.waits == [1.5, 1.5, 1.5] and limited.value.retry_after == 2  # rounded up


@pytest.mark.parametrize("error", [
    httpx.ConnectError("[Errno -2] Name or service not known"),
    httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number"),
])
def test_a_connect_error_that_waiting_cannot_heal_is_not_retried(error: Exception) -> None:
    s = Answers(*[error] * 4)
    with pytest.raises(Unreachable):
        s.client().trending()
    assert len(s.seen) == 1 and s.waits == []


def test_a_name_that_does_not_resolve_is_not_retried() -> None:
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    try:
        raise httpx.ConnectError("connect failed") from gai
    except httpx.ConnectError as e:
        error = e
    s = Answers(*[error] * 4)
    with pytest.raises(Unreachable):
        s.client().trending()
    assert len(s.seen) == 1
