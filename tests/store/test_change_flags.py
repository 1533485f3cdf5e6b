"""`change_flags` tells the items it changed from those already so, and moves ``updated_at`` on changed rows only."""

from __future__ import annotations

from sqlalchemy import select

from recsys.store import Item, Store
from recsys.store.items import FlagChange, change_flags, set_flags


def test_only_changed_rows_move(sqlite_store: Store) -> None:
    with sqlite_store.session() as s:
        s.add_all(Item(external_id=i, content_hash="h") for i in ("a", "b", "c"))
    with sqlite_store.session() as s:
        assert set_flags(s, ["a"], hidden=True) == 1
        set_flags(s, ["c"], deleted=True)
    with sqlite_store.session() as s:
        before = dict(s.execute(select(Item.external_id, Item.updated_at)).tuples().all())
    with sqlite_store.session() as s:
        out = change_flags(s, ["a", "b", "a"], hidden=True)
    assert out == FlagChange(changed=["b"], unchanged=["a"])
    with sqlite_store.session() as s:
        after = dict(s.execute(select(Item.external_id, Item.updated_at)).tuples().all())
    assert after["a"] == before["a"] and after["b"] != before["b"]
    with sqlite_store.session() as s:
        assert change_flags(s, ["a", "c"], hidden=False) == FlagChange(changed=["a"], unchanged=["c"],
                                                                       still_deleted=["c"])
        assert change_flags(s, ["c"], deleted=True) == FlagChange(unchanged=["c"])
