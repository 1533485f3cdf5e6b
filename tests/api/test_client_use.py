"""Using the clients: an AsyncClient across event loops, ``http=`` beside ``base_url``/``timeout``, a closed client,
ids no URL path can address, and the other misuses refused before anything is sent, as RecsysErrors."""

from __future__ import annotations

import gc
import importlib
import json
import sys
import threading
import weakref
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from recsys.client import AsyncClient, Client
from recsys.errors import RecsysError, ValidationFailed
from tests.conftest import run_async

PAGE = json.dumps({"items": [{"item_id": "a", "score": 1.0}], "meta": {}}).encode()


class _Page(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client pools the connection

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_an_async_client_works_from_one_event_loop_after_another(server: str) -> None:
    c = AsyncClient(server)  # module-level style: one asyncio.run per job
    pools = []
    for _ in range(3):
        assert run_async(c.trending()).ids == ["a"]
        pools.append(weakref.ref(c._http))
    run_async(c.aclose())  # on a loop of its own: the pools of the ended loops are let go of, for the collector
    gc.collect()
    assert [p() for p in pools] == [None, None, None]
    with pytest.raises(RecsysError, match="closed"):
        run_async(c.trending())


def _recorder(seen: list[httpx.Request], **kw: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, content=PAGE)),
                        **kw)


def test_base_url_beside_http() -> None:
    seen: list[httpx.Request] = []
    assert Client("http://shop:8713", http=_recorder(seen)).trending().ids == ["a"]  # fills in the missing one
    assert str(seen[0].url).startswith("http://shop:8713/v1/trending")
    Client("http://shop:8713/", http=_recorder(seen, base_url="http://shop:8713"))  # the same
    with pytest.raises(ValueError, match="is not the base_url of the httpx client"):
        Client("http://other:1", http=_recorder(seen, base_url="http://shop:8713"))
    with pytest.raises(ValueError, match="set it on your httpx client"):
        Client(timeout=5, http=_recorder(seen, base_url="http://shop:8713"))
    with pytest.raises(ValidationFailed, match="timeout= is not used with http="):
        AsyncClient(timeout=5, http=httpx.AsyncClient(base_url="http://shop:8713"))


def test_a_closed_client_says_so() -> None:
    seen: list[httpx.Request] = []
    with Client(http=_recorder(seen, base_url="http://x")) as c:
        c.trending()
    with pytest.raises(RecsysError, match="is closed"):
        c.trending()
    with pytest.raises(RecsysError, match="is closed"), c:
        pass
    own = Client("http://127.0.0.1:9")
    own.close()
    with pytest.raises(RecsysError, match="create a new one"):
        own.trending()
    assert len(seen) == 1


@pytest.mark.parametrize("item_id", ["a/b", ".", ".."])
def test_an_id_no_path_can_address_is_refused_before_sending(item_id: str) -> None:
    seen: list[httpx.Request] = []
    c = Client(http=_recorder(seen, base_url="http://x"))
    for call in (lambda: c.get_item(item_id), lambda: c.delete_user(item_id), lambda: c.similar(item_id)):
        with pytest.raises(ValidationFailed, match=r"may not contain '/' or be '\.' or '\.\.'") as e:
            call()
        assert isinstance(e.value, ValueError)
    assert seen == []


def test_misuses_are_recsys_errors() -> None:
    seen: list[httpx.Request] = []
    c = Client(http=_recorder(seen, base_url="http://x"))
    with pytest.raises(ValidationFailed, match="at most 128 characters"):
        c.get_item("x" * 70_000)  # over httpx's URL limit
    with pytest.raises(ValidationFailed, match="'b' is not the id it is put at"):
        c.put_item("a", {"item_id": "b", "title": "t"})
    c.put_item("a", {"item_id": "a", "title": "t"})
    c.recommend("u1", exclude=None)
    c.similar("a", exclude=None)
    assert "item_id" not in json.loads(seen[0].content)  # the path's id is the item's
    assert [json.loads(r.content)["exclude"] for r in seen[1:]] == [[], []]

    async def run() -> None:
        async with AsyncClient(http=httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)),
                                                      base_url="http://x")) as ac:
            await ac.get_item("y" * 70_000)

    with pytest.raises(ValidationFailed):
        run_async(run())


def test_importing_the_client_without_httpx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "recsys.client" or m.startswith("recsys.client.")]:
        monkeypatch.delitem(sys.modules, name)  # put back as they were after the test
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx raises ImportError
    with pytest.raises(ImportError, match=r"pip install httpx"):
        importlib.import_module("recsys.client")
