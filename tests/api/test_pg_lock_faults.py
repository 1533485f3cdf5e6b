"""A table locked on PostgreSQL under API traffic: every request answers 503 ``store_busy`` with Retry-After within
its bound, saying the database gave no answer in time (not "unreachable"), and leaves no backend waiting on the lock.
Before, each timed-out request left one (the watchdog only shut the client's socket): they piled up until the server
refused every client."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from recsys.api import create_app
from recsys.config import Settings
from recsys.store import Store
from recsys.store.importers import run_import
from tests.api.servers import write_items
from tests.conftest import PG_URL, _pg_database

pytestmark = pytest.mark.postgres

BOUND = 0.5


def _waiting_on_locks(watch: psycopg.Connection) -> int:
    end = time.monotonic() + 3.0
    while True:  # the cancels are asynchronous: give them a moment
        row = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchone()
        if not row or row[0] == 0 or time.monotonic() > end:
            return int(row[0]) if row else 0
        time.sleep(0.1)


def _busy(r: httpx.Response, took: float) -> None:
    assert r.status_code == 503 and r.json()["code"] == "store_busy", r.text
    assert int(r.headers["retry-after"]) >= 1 and took < BOUND + 2.0, (r.headers, took)
    assert r.json()["detail"] == f"the database gave no answer in {BOUND:g} s (a table locked, or the server " \
                                 "overloaded); retry shortly", r.text


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    yield from _pg_database()


def test_a_locked_table_answers_busy_and_leaves_no_backend_waiting(pg_url: str, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(home=tmp_path / "home", database_url=pg_url)
    settings.api.auth = False
    settings.api.compute_threads = 0
    settings.store.request_read_timeout_s = BOUND
    store = Store.open(settings)
    run_import(store, "items", write_items(tmp_path / "items.jsonl", 5), settings=settings)
    store.dispose()
    libpq = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    event = {"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}
    with TestClient(create_app(settings), raise_server_exceptions=False) as c, \
            psycopg.connect(libpq, autocommit=True) as watch, psycopg.connect(libpq) as holder:
        assert c.post("/v1/events", json=event).status_code == 200

        def post(_: int) -> tuple[httpx.Response, float]:
            t0 = time.monotonic()
            return c.post("/v1/events", json=event), time.monotonic() - t0

        holder.execute("LOCK TABLE events, items IN ACCESS EXCLUSIVE MODE")
        with caplog.at_level(logging.WARNING, logger="recsys.api.errors"), ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, range(8)))
            t0 = time.monotonic()
            item = c.get("/v1/items/i1")  # the event loop's read, on its own pool
            _busy(item, time.monotonic() - t0)
        assert _waiting_on_locks(watch) == 0  # the lock is still held: none of those requests waits on it
        for r, took in answers:
            _busy(r, took)
        assert "gave no answer in 0.5 s" in caplog.text  # the operator's words, with the URL, in the log
        holder.rollback()
        assert c.post("/v1/events", json=event).status_code == 200
        assert c.get("/v1/items/i1").status_code == 200
