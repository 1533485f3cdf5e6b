"""Failures without a usable answer (server down, timeout, a body that is not recsys JSON) come back from both
clients as RecsysErrors, with httpx's or the decoder's error as the cause."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from recsys.client import ApiError, AsyncClient, Client, Unreachable
from recsys.errors import RecsysError
from tests.api.mock_transport import MockServer
from tests.conftest import run_async


def _raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc

    return handle


def _html(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"})


def _both(handler: Callable[[httpx.Request], httpx.Response]) -> list[RecsysError]:
    """What ``trending()`` raises through the sync and the async client over ``handler``."""
    transport = httpx.MockTransport(handler)
    raised: list[RecsysError] = []
    with pytest.raises(RecsysError) as e:
        Client("http://x", http=httpx.Client(transport=transport, base_url="http://x")).trending()
    raised.append(e.value)

    async def run() -> None:
        async with AsyncClient(http=httpx.AsyncClient(transport=transport, base_url="http://x")) as c:
            await c.trending()

    with pytest.raises(RecsysError) as e:
        run_async(run())
    raised.append(e.value)
    return raised


def test_server_down_is_unreachable() -> None:
    for err in _both(_raising(httpx.ConnectError("connection refused"))):
        assert isinstance(err, Unreachable) and isinstance(err.__cause__, httpx.ConnectError)
        assert "is the recsys server running at http://x" in err.message


def test_timeout_is_unreachable() -> None:
    for err in _both(_raising(httpx.ReadTimeout("read timed out"))):
        assert isinstance(err, Unreachable) and isinstance(err.__cause__, httpx.ReadTimeout)
        assert "timed out" in err.message and "timeout=" in err.message


def test_an_answer_that_is_not_json_is_an_api_error() -> None:
    for err in _both(_html):
        assert isinstance(err, ApiError) and err.code == "bad_response" and err.status == 200
        assert isinstance(err.__cause__, ValueError) and "text/html" in err.message


class Refusing(MockServer):
    """A transport whose first ``refusals`` connections fail with ``error`` (a ConnectError: the server restarting),
    then answering a page; records the requests tried and the waits between them."""

    def __init__(self, refusals: int, error: Exception | None = None) -> None:
        super().__init__()
        self.refusals, self.error = refusals, error or httpx.ConnectError("[Errno 111] Connection refused")
        self.tries: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.tries.append(request.method)
        if len(self.tries) <= self.refusals:
            raise self.error
        return httpx.Response(200, json={"items": [], "meta": {}, "results": []})



def test_a_refused_connection_is_retried_for_every_method() -> None:
    # nothing was sent, so a POST is as safe to send again as a GET
    s = Refusing(2)
    assert s.client().send_events([{"user_id": "u", "item_id": "a", "type": "view"}]) == []
    assert s.tries == ["POST"] * 3 and s.waits == [0.5, 1.0]

    async def run() -> list[str]:
        async with s.async_client() as c:
            return (await c.trending()).ids

    s = Refusing(3)
    assert run_async(run()) == [] and s.tries == ["GET"] * 4 and s.waits == [0.5, 1.0, 2.0]


def test_refused_connection_retries_are_bounded() -> None:
    s = Refusing(100)
    with pytest.raises(Unreachable) as e:
        s.client().recommend("u1")
    assert len(s.tries) == 4 and s.waits == [0.5, 1.0, 2.0]  # Retry.attempts, the doubling backoff
    assert "after 4 tries" in e.value.message and isinstance(e.value.__cause__, httpx.ConnectError)
    s = Refusing(100)
    assert s.client().health() is False  # a probe says how the server is now: not answering is False
    assert len(s.tries) == 1


@pytest.mark.parametrize("error", [httpx.ReadTimeout("read timed out"), httpx.WriteTimeout("write timed out"),
                                   httpx.RemoteProtocolError("Server disconnected without sending a response.")])
def test_a_request_that_may_have_reached_the_server_is_not_retried(error: Exception) -> None:
    # the server may have stored the batch already: sending it again could store it twice
    s = Refusing(100, error)
    with pytest.raises(Unreachable):
        s.client().send_events([{"user_id": "u", "item_id": "a", "type": "view"}])
    assert s.tries == ["POST"] and s.waits == []


@pytest.mark.parametrize("error", [httpx.ReadError("[Errno 104] Connection reset by peer"),
                                   httpx.RemoteProtocolError("Server disconnected without sending a response.")])
def test_a_dropped_connection_is_retried_for_calls_that_may_be_sent_twice(error: Exception) -> None:
    """A keep-alive connection the server closed as a GET went out (replicas audit lead: an ECONNRESET reached the
    caller): sent again, as a GET or an upsert may be; a batch of events without ids is not (above)."""
    s = Refusing(1, error)
    assert s.client().recommend("u1").ids == [] and s.tries == ["POST", "POST"]  # a POST that stores nothing
    s = Refusing(1, error)
    s.client().send_events([{"user_id": "u", "item_id": "a", "type": "view", "event_id": "e1"}])
    assert s.tries == ["POST", "POST"]

    async def run() -> list[str]:
        async with s.async_client() as c:
            return (await c.trending()).ids

    s = Refusing(1, error)
    assert run_async(run()) == [] and len(s.tries) == 2
