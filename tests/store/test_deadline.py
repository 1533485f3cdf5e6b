"""Bounded database calls (recsys.store.deadline) when the server dies under a request: the error is the store's
outage error (503), never a 500 from the bound's own hooks."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, func, select, text

from recsys.errors import StoreUnavailable
from recsys.store import Store
from recsys.store.deadline import bounded
from recsys.store.tables import Item
from tests.conftest import PG_URL, _pg_database


@pytest.mark.postgres
def test_a_connection_killed_mid_transaction_under_a_bound_is_unavailable() -> None:
    """The rollback after the connection died fired the bound's hook on an invalidated connection, which raised
    PendingRollbackError (a 500) instead of StoreUnavailable (found by tests/api/test_pg_faults.py)."""
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for url in _pg_database():
        store = Store(url)
        store.upgrade()
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with pytest.raises(StoreUnavailable), bounded(5.0), store.session() as s:
                s.scalar(select(func.count(Item.id)))
                pid = s.scalar(text("SELECT pg_backend_pid()"))
                with admin.connect() as c:  # what a crashed or restarted server does to the connection
                    c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                s.scalar(select(func.count(Item.id)))
            with bounded(5.0), store.session() as s:  # and the next request gets a new connection
                assert s.scalar(select(func.count(Item.id))) == 0
        finally:
            admin.dispose()
            store.dispose()
