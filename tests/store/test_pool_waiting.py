"""The event loop's PostgreSQL pool during an outage: a read that gave up (the pool could not make a connection)
leaves the pool's queue of waiting clients, so ``requests_waiting`` (``recsys_db_pool_waiting``) counts only reads
actually waiting and the queue does not grow by one per request. No server is needed: the port refuses."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from recsys.errors import StoreUnavailable
from recsys.store import Store
from recsys.store.tables import Item
from tests.conftest import run_async
from tests.store.test_loop_read_logs import refused_port

pytest.importorskip("psycopg_pool")


def test_reads_that_gave_up_leave_the_waiting_queue() -> None:
    store = Store(f"postgresql+psycopg://postgres@127.0.0.1:{refused_port()}/down", read_timeout_s=0.5)

    async def requests() -> list[dict[str, int]]:
        seen = []
        for _ in range(10):
            with pytest.raises(StoreUnavailable):
                await store.fetch(select(func.count(Item.id)), {})
            seen.append(store.pool_stats())
        await store.aclose()
        return seen

    try:
        seen = run_async(requests())
    finally:
        store.dispose()
    assert [s["requests_waiting"] for s in seen] == [0] * 10
    assert seen[-1]["requests_errors"] >= 1  # they did wait, and gave up
