"""The client audit's defects, each with the rule that fixes it: a key read from a file (stripped; one no header can
carry refused when the client is made, never shown); numeric and boolean attribute values in every filter, matched
as trending matches them; batches cut by size as well as count; an empty filter list is no constraint on every
route; base-URL mistakes refused when the client is made; close() during a call raises ClientClosed; a dropped
item delete is retried, and the advice after an unanswered one is right."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.api.auth import create_key
from recsys.api.routes._common import query_filter, to_item_filter
from recsys.api.schemas import Filter
from recsys.client import AsyncClient, Client, Retry, Unreachable
from recsys.client import _calls as api
from recsys.client._base import ClientClosed, InvalidArgument
from recsys.errors import NotFound, RecsysError, ValidationFailed
from recsys.index import ItemMeta
from recsys.store import Store
from tests.conftest import run_async

PAGE = {"items": [], "meta": {}}
KEY_SECRET = "rsk_s3cretvalue"


def _mock(handle: Callable[[httpx.Request], httpx.Response], **kw: Any) -> Client:
    return Client(http=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://x"), **kw)


# -- 1. the API key ----------------------------------------------------------------------------------------------
def test_a_key_read_from_a_file_is_stripped(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    key, _ = create_key(sqlite_store, "admin", "admin")
    c = Client(api_key=f" {key}\n", http=make_client(auth=True))
    assert c.health() and len(c.trending(k=2).ids) == 2  # authorised: the header carries the key alone
    sent: list[str] = []

    async def run() -> None:
        def handle(request: httpx.Request) -> httpx.Response:
            sent.append(request.headers["x-api-key"])
            return httpx.Response(200, json=PAGE)

        async with AsyncClient(api_key=key + "\r\n", http=httpx.AsyncClient(
                transport=httpx.MockTransport(handle), base_url="http://x")) as ac:
            await ac.trending()

    run_async(run())
    assert sent == [key]


@pytest.mark.parametrize("bad", [f"{KEY_SECRET}\nX", "rsk_clé-ü", f"{KEY_SECRET}\x00", " \n "])
@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_a_key_no_header_can_carry_is_refused_when_the_client_is_made(bad: str, cls: type[Any]) -> None:
    with pytest.raises(InvalidArgument) as e:
        cls("http://127.0.0.1:1", api_key=bad)
    assert isinstance(e.value, RecsysError) and isinstance(e.value, ValueError)
    assert "api_key" in e.value.message and KEY_SECRET not in str(e.value)
    assert not bad.strip() or bad.strip() not in e.value.message


def test_httpx_refusing_a_header_is_not_no_answer_and_does_not_show_it() -> None:
    def handle(request: httpx.Request) -> httpx.Response:  # what h11 raises for a header with a newline
        raise httpx.LocalProtocolError(f"Illegal header value b'{KEY_SECRET}\\n'")

    with pytest.raises(InvalidArgument) as e:
        _mock(handle).trending()
    assert "LocalProtocolError" in e.value.message and KEY_SECRET not in e.value.message
    assert e.value.__suppress_context__ and e.value.__cause__ is None  # a traceback does not print httpx's text


# -- 2. numeric and boolean attribute values in filters ----------------------------------------------------------
def test_numeric_and_boolean_attribute_filters_work_on_every_route(make_client: Callable[..., TestClient]) -> None:
    c = Client(http=make_client())
    c.put_item("n1", {"title": "numeric wool", "category": "hats", "attributes": {"size": 42, "organic": True}})
    for f in ({"attributes": {"size": 42}}, {"attributes": {"organic": True, "size": [41, 42]}}):
        assert "n1" in c.search_text("wool", k=20, filter=f).ids
        assert "n1" in c.similar("h1", k=20, filter=f).ids
        assert "n1" in c.recommend("u1", k=20, filter=f).ids
        assert "n1" in c.more_like_these(["h1"], k=20, filter=f).ids
        assert "n1" in c.recommend_session([{"item_id": "h1", "type": "like"}], k=20, filter=f).ids
        assert "n1" in c.trending(k=20, filter=f).ids
    for bad in (None, {"x": 1}, [[1]]):
        with pytest.raises(ValidationFailed):
            c.search_text("wool", filter={"attributes": {"size": bad}})


def test_a_posted_attribute_value_matches_what_the_same_value_matches_on_get() -> None:
    stored = [{"size": 42}, {"size": "42"}, {"size": 42.0}, {"size": 43}, {"size": 4.5}, {"organic": True},
              {"organic": " TRUE "}, {"organic": False}, {}]
    meta = ItemMeta.build([f"i{n}" for n in range(len(stored))], attributes=stored)
    for key, posted, text in (("size", 42, "42"), ("size", 42.0, "42"), ("size", 4.5, "4.5"),
                              ("organic", True, "true"), ("organic", False, "False"), ("size", [43, "42"], None)):
        post = to_item_filter(Filter.model_validate({"attributes": {key: posted}}))
        texts = [str(v) for v in posted] if isinstance(posted, list) else [text]
        got = run_async(query_filter(category=None, price_min=None, price_max=None, in_stock=None,
                                     attr=[f"{key}:{t}" for t in texts]))
        assert np.array_equal(post.mask(meta), to_item_filter(got).mask(meta)), (key, posted)
        assert post.mask(meta).any()
    assert to_item_filter(Filter.model_validate({"attributes": {"size": 42}})).mask(meta).tolist()[:4] == \
        [True, True, True, False]


# -- 3. batches cut by size --------------------------------------------------------------------------------------
class BodyLimit:
    """A server refusing bodies over the API's default limit (10,000,000 bytes) with its 413, recording sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sizes.append(len(request.content))
        if len(request.content) > 10_000_000:
            return httpx.Response(413, json={"error": {"code": "too_large", "message": "request body over the limit"}})
        items = json.loads(request.content)["items"]
        return httpx.Response(200, json={"results": [{"item_id": it["item_id"], "status": "stored", "index": j}
                                                     for j, it in enumerate(items)]})


def test_a_batch_of_long_items_is_sent_in_calls_under_the_body_limit() -> None:
    server = BodyLimit()
    items = [{"item_id": f"big-{i}", "description": "x" * 11_000} for i in range(1000)]  # 11 MB in all
    res = _mock(server.handle).upsert_items(items)
    assert [r["index"] for r in res] == list(range(1000)) and {r["status"] for r in res} == {"stored"}
    assert len(server.sizes) >= 2 and max(server.sizes) <= api.MAX_BODY_BYTES < 10_000_000


def test_a_record_too_large_alone_is_its_own_error() -> None:
    server = BodyLimit()
    items = [{"item_id": "a"}, {"item_id": "huge", "description": "é" * 3_000_000}, {"item_id": "b"}]
    res = _mock(server.handle).upsert_items(items)
    assert [r["status"] for r in res] == ["stored", "error", "stored"] and res[1]["item_id"] == "huge"
    assert "bytes as JSON" in res[1]["error"] and len(server.sizes) == 1


# -- 4. an empty filter list is no constraint ---------------------------------------------------------------------
@pytest.mark.parametrize("empty", [{"categories": []}, {"attributes": {"colour": []}},
                                   {"categories": [], "attributes": {"colour": []}}])
def test_an_empty_filter_list_is_no_constraint_on_every_route(make_client: Callable[..., TestClient],
                                                              empty: dict[str, Any]) -> None:
    c = Client(http=make_client())
    assert c.trending(k=5, filter=empty).ids == c.trending(k=5).ids
    assert c.similar("s1", k=5, filter=empty).ids == c.similar("s1", k=5).ids != []
    assert c.recommend("u1", k=5, filter=empty).ids == c.recommend("u1", k=5).ids != []
    assert c.search_text("wool", k=5, filter=empty).ids == c.search_text("wool", k=5).ids != []


def test_an_empty_list_leaves_the_other_constraints(make_client: Callable[..., TestClient]) -> None:
    c = Client(http=make_client())
    f = {"categories": [], "attributes": {"colour": "grey", "size": []}}
    assert set(c.similar("s1", k=20, filter=f).ids) == {f"h{i}" for i in range(1, 9)}
    assert Filter.model_validate({"categories": [], "attributes": {"a": []}}).is_empty()


# -- 5. base-URL mistakes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_a_base_url_without_a_scheme_is_refused_naming_it(cls: type[Any]) -> None:
    for url in ("127.0.0.1:8740", "localhost:8000", "u:pw@example.com:8000"):
        with pytest.raises(InvalidArgument) as e:
            cls(url)
        assert isinstance(e.value, ValueError) and "http://" in e.value.message
        assert url.removeprefix("u:pw@") in e.value.message and "pw" not in e.value.message


@pytest.mark.parametrize("url", ["http://127.0.0.1:8740/v1", "http://127.0.0.1:8740/v1/"])
def test_a_base_url_ending_in_v1_is_refused_naming_the_right_one(url: str) -> None:
    for make in (lambda: Client(url), lambda: AsyncClient(url),
                 lambda: Client(url, http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))))):
        with pytest.raises(InvalidArgument, match="ends in /v1") as e:
            make()
        assert "'http://127.0.0.1:8740'" in e.value.message


def test_a_base_url_with_a_prefix_is_kept_for_a_server_behind_a_proxy() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=PAGE)

    c = Client("https://example.com/recsys", http=httpx.Client(transport=httpx.MockTransport(handle)))
    c.trending(k=1)
    assert seen == ["https://example.com/recsys/v1/trending?k=1"]
    Client("http://127.0.0.1:8000/").close()


def test_a_path_no_route_has_names_the_url() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "Not Found"}})

    c = Client(http=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://x/api"))
    with pytest.raises(NotFound) as e:
        c.get_item("a")
    assert "http://x/api/v1/items/a" in e.value.message and "base URL" in e.value.message


# -- 6. close() during a call -----------------------------------------------------------------------------------
def test_close_from_another_thread_during_a_call_raises_client_closed() -> None:
    started, closed = threading.Event(), threading.Event()

    def handle(request: httpx.Request) -> httpx.Response:
        started.set()
        closed.wait()
        raise httpx.ReadError("connection closed")  # what the in-flight request meets: its pool was closed

    c = Client("http://x", retry=Retry(sleep=lambda s: None))
    c._http.close()
    c._http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://x")  # own pool, mocked
    out: list[BaseException] = []

    def call() -> None:
        try:
            c.recommend("u")
        except BaseException as e:
            out.append(e)

    worker = threading.Thread(target=call)
    worker.start()
    started.wait()
    c.close()
    closed.set()
    worker.join()
    assert len(out) == 1 and isinstance(out[0], ClientClosed), out


def test_close_during_a_retry_wait_raises_client_closed() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": "store_busy", "message": "busy"}})

    c = Client("http://x")
    c._http.close()
    c._http = httpx.Client(transport=httpx.MockTransport(busy), base_url="http://x")
    c.retry = Retry(sleep=lambda s: c.close())
    with pytest.raises(ClientClosed):
        c.trending()

    async def run() -> None:
        ac = AsyncClient("http://x")
        await ac._http.aclose()
        ac._http = httpx.AsyncClient(transport=httpx.MockTransport(busy), base_url="http://x")

        async def asleep(s: float) -> None:
            await ac.aclose()

        ac.retry = Retry(asleep=asleep)
        with pytest.raises(ClientClosed):
            await ac.trending()

    run_async(run())


# -- 7. deleting an item again -------------------------------------------------------------------------------------
def test_a_dropped_item_delete_is_retried_and_the_advice_is_right() -> None:
    answers: list[httpx.Response | Exception] = [httpx.RemoteProtocolError("Server disconnected"),
                                                 httpx.Response(200, json={"item_id": "a", "deleted": True})]
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    _mock(handle, retry=Retry(sleep=lambda s: None)).delete_item("a")
    assert seen == ["DELETE", "DELETE"]

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out")

    with pytest.raises(Unreachable) as e:
        _mock(timeout).delete_item("a")
    assert e.value.maybe_applied and "deleting an item again answers 200" in e.value.message
    assert "repeated delete answers 404" not in e.value.message
