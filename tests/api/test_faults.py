"""Faults: a SIGKILLed server loses no acknowledged event; a database outage is a 503 with Retry-After, then the
service recovers by itself."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import make_url

from recsys.api import create_app
from recsys.config import Settings
from recsys.store import Store
from recsys.store.importers import run_import
from recsys.store.tables import Event
from tests.api.servers import Server, TcpProxy, write_items
from tests.conftest import PG_URL, _pg_database


def _stored_client_ids(store: Store) -> set[str]:
    with store.session() as s:
        return {c for c in s.scalars(select(Event.client_event_id)) if c}


def test_sigkill_after_ack_loses_no_event(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    store = Store.open(settings)
    run_import(store, "items", write_items(tmp_path / "items.jsonl", 20), settings=settings)
    store.dispose()
    env = {"RECSYS_HOME": str(settings.home), "RECSYS_API__AUTH": "false",
           "RECSYS_API__RATE_LIMIT_PER_MINUTE": "0", "RECSYS_DATABASE_URL": ""}
    acked: set[str] = set()
    counter = itertools.count()
    stop = threading.Event()

    def send(server: Server) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                batch = [{"user_id": f"u{n % 7}", "item_id": f"i{n % 20}", "type": "view", "event_id": f"e{n}"}
                         for n in (next(counter) for _ in range(5))]
                try:
                    r = http.post("/v1/events", json={"events": batch})
                except httpx.TransportError:
                    return  # the server died mid-request: that batch was never acknowledged
                assert r.status_code == 200, r.text
                for ev, res in zip(batch, r.json()["results"], strict=True):
                    assert res["status"] == "stored"
                    acked.add(ev["event_id"])

    with Server(env, log=tmp_path / "server.log") as server:
        server.wait_ready()
        senders = [threading.Thread(target=send, args=(server,)) for _ in range(4)]
        for t in senders:
            t.start()
        while len(acked) < 200:
            time.sleep(0.01)
        server.kill()  # SIGKILL while requests are in flight
        stop.set()
        for t in senders:
            t.join()
    store = Store.open(settings)
    try:
        assert acked and acked <= _stored_client_ids(store)
    finally:
        store.dispose()


def _behind_proxy(tmp_path: Path, real_url: str, proxy: TcpProxy) -> tuple[Settings, Store]:
    """Settings that reach the database through ``proxy`` (auth off), and a direct store holding five items."""
    u = make_url(real_url)
    via_proxy = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = Settings(home=tmp_path / "home", database_url=via_proxy)
    settings.api.auth = False
    settings.api.compute_threads = 0
    direct = Store(real_url)
    direct.upgrade()
    run_import(direct, "items", write_items(tmp_path / "items.jsonl", 5), settings=settings)
    return settings, direct


@pytest.mark.postgres
def test_database_outage_503_then_recovery(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for real_url in _pg_database():
        u = make_url(real_url)
        proxy = TcpProxy((u.host or "127.0.0.1", u.port or 5432))
        try:
            settings, direct = _behind_proxy(tmp_path, real_url, proxy)
            event = {"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}
            with TestClient(create_app(settings), raise_server_exceptions=False) as c:
                assert c.post("/v1/events", json=event).status_code == 200
                proxy.cut()
                for _ in range(3):
                    r = c.post("/v1/events", json=event)
                    assert r.status_code == 503, r.text
                    assert r.json()["error"]["code"] == "store_down"
                    assert int(r.headers["retry-after"]) >= 1
                r = c.get("/readyz")
                assert r.status_code == 503 and r.json()["store"] is False and "retry-after" in r.headers
                assert c.get("/healthz").status_code == 200  # alive, just not ready
                proxy.restore()
                codes = []
                for _ in range(100):  # recovers by itself: no restart, no manual step
                    codes.append(c.post("/v1/events", json=event).status_code)
                    if codes[-1] == 200:
                        break
                    time.sleep(0.1)
                assert codes[-1] == 200, codes
                assert set(codes) <= {200, 503}
                assert c.get("/readyz").json()["store"] is True
            direct.dispose()
        finally:
            proxy.close()


def _guarded(fn: Callable[[], httpx.Response]) -> httpx.Response:
    """``fn()`` in a thread, so that a request that would hang fails the test instead of the run."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(timeout=120)


def test_sqlite_locked_by_an_import_answers_busy_not_after_30s(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.api.auth = False
    settings.api.compute_threads = 0
    settings.store.request_read_timeout_s = 0.3
    store = Store.open(settings)
    run_import(store, "items", write_items(tmp_path / "items.jsonl", 5), settings=settings)
    store.dispose()
    event = {"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        writer = sqlite3.connect(settings.home / "recsys.db", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # what a bulk import holds until it commits
        try:
            r = _guarded(lambda: c.post("/v1/events", json=event))
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_busy", r.text
            assert "busy" in r.json()["error"]["message"] and int(r.headers["retry-after"]) >= 1
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert c.post("/v1/events", json=event).json()["stored"] == 1


@pytest.mark.postgres
def test_hung_database_bounds_every_route(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for real_url in _pg_database():
        u = make_url(real_url)
        proxy = TcpProxy((u.host or "127.0.0.1", u.port or 5432))
        try:
            settings, direct = _behind_proxy(tmp_path, real_url, proxy)
            settings.store.request_read_timeout_s = 1.0
            event = {"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}
            calls: dict[str, Callable[..., httpx.Response]] = {
                "events": lambda c, event=event: c.post("/v1/events", json=event),
                "item": lambda c: c.get("/v1/items/i1"),
                "put": lambda c: c.put("/v1/items/i9", json={"title": "x"}),
                "readyz": lambda c: c.get("/readyz"),
            }
            with TestClient(create_app(settings), raise_server_exceptions=False) as c:
                assert c.post("/v1/events", json=event).status_code == 200
                assert c.get("/v1/items/i1").status_code == 200
                proxy.hang()  # the server (or the network) stops answering; nothing is closed
                for name, call in calls.items():
                    r = _guarded(lambda call=call: call(c))
                    assert r.status_code == 503 and "retry-after" in r.headers, (name, r.text)
                proxy.resume()
                codes = []
                for _ in range(100):  # the dropped connections are replaced: no restart
                    codes.append(c.post("/v1/events", json=event).status_code)
                    if codes[-1] == 200:
                        break
                    time.sleep(0.1)
                assert codes[-1] == 200, codes
                assert c.get("/v1/items/i1").status_code == 200
            direct.dispose()
        finally:
            proxy.close()
