"""The clients' retries of 429 and 503 (honouring Retry-After, bounded in tries and total wait) and AsyncClient,
against httpx MockTransports (no sleeping: the waits are recorded)."""

from __future__ import annotations

import email.utils
import inspect
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from recsys.api.auth import create_key
from recsys.client import ApiError, AsyncClient, Client, EventResult, Retry
from recsys.client._base import retry_after
from recsys.errors import (
    ModelUnavailable,
    NoIndex,
    RankerError,
    RateLimited,
    RecsysError,
    StoreBusy,
    StoreDamaged,
    StoreUnavailable,
    UnknownItem,
)
from recsys.store import Store
from tests.conftest import run_async

PAGE = {"items": [{"item_id": "a", "score": 1.0}], "meta": {}}


class Script:
    """A transport answering from a list of (status, headers) and then 200 with a page; records what it saw. Error
    answers carry ``code`` (by default the one the server sends with that status); "" sends a body without one."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]], code: str | None = None) -> None:
        self.answers: Iterator[tuple[int, dict[str, str]]] = iter(answers)
        self.code = code
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, headers = next(self.answers, (200, {}))
        if status == 200:
            return httpx.Response(200, json=PAGE)
        code = self.code if self.code is not None else {429: "rate_limited", 503: "store_down", 404: "unknown_item"}[
            status]
        if not code:
            return httpx.Response(status, headers=headers, text="<html>Service Unavailable</html>")
        return httpx.Response(status, headers=headers, json={"error": {"code": code, "message": "no"}})

    def retry(self, **kw: Any) -> Retry:
        async def asleep(s: float) -> None:
            self.waits.append(s)

        return Retry(sleep=self.waits.append, asleep=asleep, **kw)

    def client(self, **kw: Any) -> Client:
        return Client(http=httpx.Client(transport=httpx.MockTransport(self.handle), base_url="http://x"),
                      retry=self.retry(**kw))

    def async_client(self, **kw: Any) -> AsyncClient:
        return AsyncClient(http=httpx.AsyncClient(transport=httpx.MockTransport(self.handle), base_url="http://x"),
                           retry=self.retry(**kw))


def test_retries_429_and_503_after_retry_after() -> None:
    s = Script([(429, {"Retry-After": "2"}), (503, {"Retry-After": "1"})])
    assert s.client().trending().ids == ["a"]
    assert len(s.requests) == 3 and s.waits == [2.0, 1.0]


def test_backoff_without_retry_after() -> None:
    s = Script([(503, {}), (503, {}), (503, {})])
    assert s.client(backoff_s=0.5).similar("x").ids == ["a"]
    assert s.waits == [0.5, 1.0, 2.0]


def test_attempts_are_bounded() -> None:
    s = Script([(503, {"Retry-After": "1"})] * 10)
    with pytest.raises(StoreUnavailable):
        s.client(attempts=3).trending()
    assert len(s.requests) == 3 and s.waits == [1.0, 1.0]
    s = Script([(429, {"Retry-After": "1"})])
    with pytest.raises(RateLimited):
        s.client(attempts=1).trending()  # retries off
    assert len(s.requests) == 1 and s.waits == []


def test_total_wait_is_bounded() -> None:
    s = Script([(429, {"Retry-After": "20"})] * 5)
    with pytest.raises(RateLimited):
        s.client(max_wait_s=30).trending()
    assert len(s.requests) == 2 and s.waits == [20.0]  # a second 20 s wait would pass the 30 s budget: raised at once


def test_other_errors_are_not_retried() -> None:
    s = Script([(404, {})])
    with pytest.raises(UnknownItem):
        s.client().get_item("x")
    assert len(s.requests) == 1


@pytest.mark.parametrize("code, error", [("store_damaged", StoreDamaged), ("no_index", NoIndex),
                                         ("model_missing", ModelUnavailable), ("ranker", RankerError)])
def test_503_that_waiting_cannot_heal_is_not_retried(code: str, error: type[RecsysError]) -> None:
    s = Script([(503, {"Retry-After": "1"})] * 4, code=code)
    with pytest.raises(error):
        s.client().trending()
    assert len(s.requests) == 1 and s.waits == []

    async def run() -> None:
        async with s.async_client() as c:
            await c.trending()

    with pytest.raises(error):
        run_async(run())
    assert len(s.requests) == 2 and s.waits == []


@pytest.mark.parametrize("code", ["store_busy", "unavailable", ""])
def test_503_that_waiting_can_heal_is_retried(code: str) -> None:
    s = Script([(503, {"Retry-After": "1"})], code=code)  # "": a proxy's page, no code
    assert s.client().trending().ids == ["a"]
    assert len(s.requests) == 2 and s.waits == [1.0]
    s = Script([(503, {"Retry-After": "1"})] * 4, code=code)
    with pytest.raises(StoreBusy if code == "store_busy" else ApiError):
        s.client(attempts=2).trending()


def test_rate_limited_carries_the_servers_retry_after() -> None:
    s = Script([(429, {"Retry-After": "40"})])
    with pytest.raises(RateLimited) as e:
        s.client(attempts=1).trending()
    assert e.value.retry_after == 40
    s = Script([(429, {"Retry-After": "soon"})])
    with pytest.raises(RateLimited) as e:
        s.client(attempts=1).trending()
    assert e.value.retry_after == 1  # unreadable: the default


def test_retry_after_forms() -> None:
    assert retry_after("3") == 3.0 and retry_after(None) is None and retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    assert 3500 < (retry_after(later) or 0) <= 3600
    assert retry_after(email.utils.formatdate(0, usegmt=True)) == 0.0


def test_async_client_retries() -> None:
    s = Script([(429, {"Retry-After": "2"}), (503, {})])

    async def run() -> list[str]:
        async with s.async_client(backoff_s=0.25) as c:
            return (await c.trending()).ids

    assert run_async(run()) == ["a"]
    assert len(s.requests) == 3 and s.waits == [2.0, 0.5]


def test_async_client_has_the_same_methods() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {n: inspect.signature(f) for n, f in vars(cls).items() if callable(f) and not n.startswith("_")
                and n not in ("close", "aclose")}

    sync, async_ = public(Client), public(AsyncClient)
    assert sync.keys() == async_.keys() and len(sync) >= 22
    for name, sig in sync.items():
        assert sig == async_[name], name  # names, kinds, defaults, annotations and the return type alike
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name


def _through(tc: TestClient) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler that passes each request on to the app under ``tc``."""
    def handle(request: httpx.Request) -> httpx.Response:
        r = tc.request(request.method, request.url.raw_path.decode(), headers=dict(request.headers),
                       content=request.content)
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    return handle


def test_async_client_covers_the_endpoints(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    tc = make_client(auth=True)
    key, _ = create_key(sqlite_store, "admin", "admin")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")

    async def run() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(_through(tc)), base_url="http://x")
        async with AsyncClient(api_key=key, http=http) as c:
            assert await c.health() and (await c.ready())["ready"]
            assert (await c.status())["index_generation"] == "gen-1"
            assert "recsys_http_requests_total" in await c.metrics()
            assert (await c.put_item("n1", {"title": "green hat", "category": "hats"}))["title"] == "green hat"
            assert (await c.upsert_items([{"item_id": "n2", "category": "hats"}]))[0]["status"] == "stored"
            assert (await c.get_item("n2"))["category"] == "hats"
            await c.delete_item("n2")
            with pytest.raises(UnknownItem):
                await c.get_item("n2")
            res = await c.send_events([{"user_id": "u1", "item_id": "h1", "type": "like", "event_id": "x"}])
            assert res == [EventResult(0, "stored", 1)]
            assert (await c.buy_again("u1", k=3)).ids == ["h1"]
            assert len((await c.recommend("u1", k=3, explain=True)).ids) == 3
            assert len((await c.recommend_session([{"item_id": "s1", "type": "like"}], k=2)).ids) == 2
            assert (await c.similar("s1", k=2, filter={"price_max": 30})).ids == ["s2", "s3"]
            assert (await c.search_text("wool", k=2)).ids == ["h1", "h2"]
            assert (await c.search_image(buf.getvalue(), k=2, filter={"categories": ["shoes"]})).ids == ["s1", "s2"]
            assert (await c.more_like_these(["h1"], ["s1"], k=1)).ids[0].startswith("h")
            assert len((await c.trending(k=2)).ids) == 2
            assert await c.delete_user("u1") == 1
        await http.aclose()

    run_async(run())
