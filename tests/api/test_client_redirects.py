"""A redirect is never an answer: both clients raise an ApiError naming the Location instead of following it (a write
could land elsewhere, or as a GET) or reading its empty body as success. An empty id is refused before anything is
sent, and ``health()`` is False, not an error, when the server does not answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from recsys.client import ApiError, AsyncClient, Client
from tests.conftest import run_async

_HTTPS = "https://shop.example"


class Proxy:
    """An http -> https proxy: answers every request with ``status`` to the same path on https, recording them."""

    def __init__(self, status: int = 308, location: bool = True) -> None:
        self.status, self.location = status, location
        self.seen: list[tuple[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, str(request.url)))
        if request.url.scheme == "https":  # what a followed redirect would reach
            return httpx.Response(200, json={})
        headers = {"Location": str(request.url.copy_with(scheme="https"))} if self.location else {}
        return httpx.Response(self.status, headers=headers)

    def client(self) -> Client:
        # follow_redirects=True: the client must not follow even where the httpx client it is given would
        return Client(http=httpx.Client(transport=httpx.MockTransport(self.handle), base_url="http://shop.example",
                                        follow_redirects=True))

    def async_client(self) -> AsyncClient:
        return AsyncClient(http=httpx.AsyncClient(transport=httpx.MockTransport(self.handle),
                                                  base_url="http://shop.example", follow_redirects=True))


_CALLS: dict[str, Callable[[Any], Any]] = {
    "delete_item": lambda c: c.delete_item("item-00001"),
    "put_item": lambda c: c.put_item("item-00001", {"title": "x"}),
    "get_item": lambda c: c.get_item("item-00001"),
    "send_events": lambda c: c.send_events([{"user_id": "u", "item_id": "a", "type": "view"}]),
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("name", sorted(_CALLS))
def test_a_redirect_is_an_error_naming_the_location(name: str, status: int) -> None:
    proxy = Proxy(status)
    with pytest.raises(ApiError) as e:
        _CALLS[name](proxy.client())
    assert e.value.code == "redirect" and e.value.status == status
    assert f"redirected (HTTP {status}) to {_HTTPS}/v1/" in e.value.message and "base URL" in e.value.message
    assert len(proxy.seen) == 1  # sent once, never followed

    async def run() -> None:
        async with proxy.async_client() as c:
            await _CALLS[name](c)

    with pytest.raises(ApiError) as e:
        run_async(run())
    assert e.value.code == "redirect" and _HTTPS in e.value.message and len(proxy.seen) == 2


def test_a_redirect_without_a_location_says_so() -> None:
    with pytest.raises(ApiError, match="with no Location") as e:
        Proxy(307, location=False).client().delete_item("a")
    assert e.value.status == 307


@pytest.mark.parametrize("name", ["delete_item", "get_item", "put_item", "similar", "recommend", "delete_user"])
def test_an_empty_id_is_refused_before_sending(name: str) -> None:
    proxy = Proxy()
    args: tuple[Any, ...] = ("", {}) if name == "put_item" else ("",)
    with pytest.raises(ValueError, match="an id may not be empty"):
        getattr(proxy.client(), name)(*args)

    async def run() -> None:
        async with proxy.async_client() as c:
            await getattr(c, name)(*args)

    with pytest.raises(ValueError, match="an id may not be empty"):
        run_async(run())
    assert proxy.seen == []


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused")


def _answer(status: int) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json={})


@pytest.mark.parametrize(("handler", "expected"), [(_refused, False), (_answer(200), True), (_answer(503), False),
                                                   (_answer(307), False)])
def test_health_is_a_bool_even_when_the_server_is_down(handler: Callable[[httpx.Request], httpx.Response],
                                                       expected: bool) -> None:
    transport = httpx.MockTransport(handler)
    assert Client(http=httpx.Client(transport=transport, base_url="http://x")).health() is expected

    async def run() -> bool:
        async with AsyncClient(http=httpx.AsyncClient(transport=transport, base_url="http://x")) as c:
            return await c.health()

    assert run_async(run()) is expected


def test_health_is_false_on_a_closed_port() -> None:
    with Client("http://127.0.0.1:9", timeout=2.0) as c:  # port 9 (discard): nothing listens in a test run
        assert c.health() is False
