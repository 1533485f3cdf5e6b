"""The event loop's PostgreSQL pool (recsys.store.loop_reads) during an outage: psycopg_pool warns of every failed
connect (tens a second under load), and its tasks, started by the request that first opened the pool, tagged every
warning with that request's id for ever. They now start outside any request, and each warning is logged once a
minute. No server is needed: the database's port refuses connections."""

from __future__ import annotations

import asyncio
import logging
import re
import socket

import pytest
from sqlalchemy import func, select

from recsys.api.logs import RequestIdFilter, request_id_var
from recsys.errors import StoreUnavailable
from recsys.store import Store
from recsys.store.loop_reads import DRIVER_REPEATS
from recsys.store.tables import Item
from tests.conftest import run_async

pytest.importorskip("psycopg_pool")


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on leaving: nothing listens there


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(RequestIdFilter())  # what the server's handler does: the id of the context that logs
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_pool_warnings_name_no_request_and_are_not_repeated() -> None:
    store = Store(f"postgresql+psycopg://postgres@127.0.0.1:{refused_port()}/down", read_timeout_s=0.5)
    DRIVER_REPEATS.clear()
    collect = Collect()
    driver = logging.getLogger("psycopg")  # psycopg.pool's records reach it too
    driver.addHandler(collect)

    async def requests() -> None:
        for n in range(8):  # each a request of its own; the first opens the pool
            token = request_id_var.set(f"request-{n}")
            try:
                with pytest.raises(StoreUnavailable, match="unreachable"):
                    await store.fetch(select(func.count(Item.id)), {})
            finally:
                request_id_var.reset(token)
            await asyncio.sleep(0.1)  # the pool keeps trying meanwhile
        await store.aclose()

    try:
        run_async(requests())
    finally:
        driver.removeHandler(collect)
        store.dispose()
    pool = [r for r in collect.records if r.name == "psycopg.pool"]
    assert pool, "the outage was not logged"
    assert [r.request_id for r in pool] == [None] * len(pool), [  # type: ignore[attr-defined]
        (r.getMessage(), r.request_id) for r in pool]  # type: ignore[attr-defined]
    said = [re.sub(r"0x[0-9a-f]+|\d+", "#", r.getMessage()) for r in collect.records]
    assert len(said) == len(set(said)), said
