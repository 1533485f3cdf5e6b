from __future__ import annotations

from sqlalchemy import inspect

from recsys.store import Store


def test_downgrade_base_then_upgrade_head_round_trips(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    tables = set(inspect(store.engine).get_table_names())
    assert {"items", "item_media", "users", "events", "artifacts", "item_tags", "api_keys"} <= tables
    store.downgrade("base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    store.upgrade()
    assert store.at_head()
    assert set(inspect(store.engine).get_table_names()) == tables
    store.dispose()


def test_dead_database_gives_a_clear_error() -> None:
    import pytest

    from recsys.errors import StoreUnavailable

    store = Store("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable) as exc:
        store.upgrade()
    assert "RECSYS_DATABASE_URL" in str(exc.value)
