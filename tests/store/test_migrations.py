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


def test_events_copied_with_autoincrement_keep_every_row_and_the_next_id(tmp_path: object) -> None:
    """Migration 0008 copies SQLite's events table (AUTOINCREMENT cannot be added in place): rows, ids and indexes
    survive, and the next id is above every id ever stored."""
    from pathlib import Path

    from sqlalchemy import text

    store = Store(f"sqlite:///{Path(str(tmp_path)) / 'm.db'}")
    store.upgrade("0007")
    with store.engine.begin() as c:
        c.execute(text("INSERT INTO users (id, external_id, attributes, created_at) "
                       "VALUES (1, 'u', '{}', '2024-01-01')"))
        c.execute(text("INSERT INTO items (id, external_id, title, description, in_stock, attributes, hidden, "
                       "deleted, content_hash, created_at, updated_at) "
                       "VALUES (1, 'i', 't', '', 1, '{}', 0, 0, '', '2024-01-01', '2024-01-01')"))
        for i in (1, 2, 3):
            c.execute(text("INSERT INTO events (id, user_id, item_id, type, ts, created_at) "
                           f"VALUES ({i}, 1, 1, 'view', '2024-01-0{i}', '2024-01-01')"))
        c.execute(text("DELETE FROM events WHERE id = 3"))
    store.upgrade()
    with store.engine.begin() as c:
        assert [r[0] for r in c.execute(text("SELECT id FROM events ORDER BY id"))] == [1, 2]
        c.execute(text("INSERT INTO events (user_id, item_id, type, ts, created_at) "
                       "VALUES (1, 1, 'view', '2024-02-01', '2024-01-01')"))
        assert c.execute(text("SELECT max(id) FROM events")).scalar_one() == 3  # 3 was freed before the copy
        c.execute(text("DELETE FROM events WHERE id = 3"))
        c.execute(text("INSERT INTO events (user_id, item_id, type, ts, created_at) "
                       "VALUES (1, 1, 'view', '2024-02-02', '2024-01-01')"))
        assert c.execute(text("SELECT max(id) FROM events")).scalar_one() == 4  # never 3 again
    assert {ix["name"] for ix in inspect(store.engine).get_indexes("events")} >= {"ix_events_user_ts", "ix_events_ts"}
    store.dispose()
