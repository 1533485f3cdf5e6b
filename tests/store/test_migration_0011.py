"""Migration 0011: catalogue_state.details_version also moves when an item's stock or attributes change, whoever
writes them (plain SQL here), so a served generation's filters re-read them (recsys.serving.live_meta). The
downgrade takes the triggers away and leaves the data as it was."""

from __future__ import annotations

from sqlalchemy import select, text

from recsys.store import Store
from recsys.store.tables import CatalogueState


def _version(store: Store) -> int:
    with store.reading() as c:
        return int(c.execute(select(CatalogueState.details_version)).scalar_one())


def _sql(store: Store, statement: str) -> None:
    with store.engine.begin() as c:
        c.execute(text(statement))


def _moves(store: Store, statement: str) -> bool:
    before = _version(store)
    _sql(store, statement)
    return _version(store) > before


TRUE, FALSE = "true", "false"


def test_stock_and_attribute_changes_move_the_details_version_and_the_downgrade_stops_it(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.upgrade()
        assert store.at_head()
        _sql(store, "INSERT INTO items (external_id, title, description, category, price, in_stock, attributes, "
                    "hidden, deleted, content_hash, created_at, updated_at) VALUES ('a', 't', '', 'c', 1.0, "
                    f"{TRUE}, '{{\"colour\": \"red\"}}', {FALSE}, {FALSE}, 'h', '2026-01-01', '2026-01-01')")
        steps = [
            (f"UPDATE items SET in_stock = {FALSE}", True),
            (f"UPDATE items SET in_stock = {FALSE}", False),  # the same value: nothing a filter sees changed
            ("UPDATE items SET attributes = '{\"colour\": \"blue\"}'", True),
            ("UPDATE items SET attributes = '{\"colour\": \"blue\"}'", False),
            ("UPDATE items SET description = 'd'", False),
            ("UPDATE items SET price = 2.0", True),  # 0009's, still there
        ]
        for statement, moves in steps:
            assert _moves(store, statement) is moves, statement
        store.downgrade("0010")
        assert store.current_revision() == "0010"
        assert not _moves(store, f"UPDATE items SET in_stock = {TRUE}")
        assert not _moves(store, "UPDATE items SET attributes = '{\"colour\": \"green\"}'")
        assert _moves(store, "UPDATE items SET price = 3.0")
        with store.reading() as c:  # the data is as it was written
            assert c.execute(text("SELECT price, category FROM items")).one() == (3.0, "c")
        store.upgrade()
        assert _moves(store, f"UPDATE items SET in_stock = {FALSE}")
    finally:
        store.dispose()
