"""Failures without a usable answer (server down, timeout, a body that is not recsys JSON) come back from both
clients as RecsysErrors, with httpx's or the decoder's error as the cause."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from recsys.client import ApiError, AsyncClient, Client, Unreachable
from recsys.errors import RecsysError
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
