"""Generated descriptions (migration 0006) on SQLite and PostgreSQL: stored apart from the merchant's text, replaced
on re-run, and covered by the lexical index under every write."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from recsys.store import Store
from recsys.store.descriptions import (
    GeneratedDescription,
    description_details,
    generated_texts,
    remove_descriptions,
    replace_descriptions,
)
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from recsys.store.items import item_details, set_flags
from recsys.store.lexical import lexical_search
from recsys.store.tables import Item, ItemDescription

ITEMS = [
    ItemRecord("a1", "Art. 4711", "", "Dress"),
    ItemRecord("a2", "Strap top", "Jersey top with narrow shoulder straps.", "Vest top"),
    ItemRecord("a3", "Basic tee", "", "T-shirt"),
]


def _import(store: Store, records: list[ItemRecord]) -> None:
    with store.session() as s:
        upsert_items(s, records, TableCounts())


def _find(store: Store, query: str) -> list[str]:
    with store.reading() as c:
        return [i for i, _ in lexical_search(c, query, 50)]


def _indexed(store: Store, word: str) -> list[int]:
    """The keys of the items whose index row holds ``word``, read from the index itself (any schema revision)."""
    sql = ("SELECT rowid FROM items_fts WHERE items_fts MATCH :w" if store.dialect == "sqlite"
           else "SELECT item_id FROM item_search WHERE document @@ to_tsquery('english', :w)")
    with store.reading() as c:
        return sorted(c.execute(text(sql), {"w": word}).scalars())


def _pks(store: Store) -> dict[str, int]:
    with store.session() as s:
        return dict(s.execute(select(Item.external_id, Item.id)).all())


def _describe(store: Store, texts: dict[str, str]) -> None:
    pks = _pks(store)
    rows = [GeneratedDescription(pks[i], t, [{"facet": "colour", "label": t.split()[0].lower(), "score": 0.9}],
                                 "zero-shot:test", "generic") for i, t in texts.items()]
    with store.session() as s:
        replace_descriptions(s, rows)


def test_generated_text_is_stored_apart_and_replaced(store: Store) -> None:
    _import(store, ITEMS)
    _describe(store, {"a1": "Red striped dress in jersey."})
    _describe(store, {"a1": "Blue dress."})  # a re-run replaces, never adds
    with store.session() as s:
        assert s.scalar(select(Item.description).where(Item.external_id == "a1")) == ""  # merchant text untouched
        assert s.scalar(select(Item.title).where(Item.external_id == "a1")) == "Art. 4711"
        assert len(s.scalars(select(ItemDescription)).all()) == 1
        assert list(generated_texts(s).values()) == ["Blue dress."]
        details = item_details(s, "a1")
    gen = details["generated_description"]
    assert gen["text"] == "Blue dress." and gen["generated"] is True and gen["source"] == "zero-shot:test"
    assert details["description"] == ""
    with store.session() as s:
        assert item_details(s, "a2")["generated_description"] is None


def test_keyword_search_finds_generated_words_and_follows_every_write(store: Store) -> None:
    _import(store, ITEMS)
    assert _find(store, "crimson") == []
    _describe(store, {"a1": "Crimson striped dress.", "a3": "Olive tee."})
    assert _find(store, "crimson") == ["a1"]
    assert _find(store, "stripes") == ["a1"]  # stemmed like the merchant's text
    assert _find(store, "4711") == ["a1"]  # the merchant's words are still there
    _describe(store, {"a1": "Teal dress."})
    assert _find(store, "crimson") == [] and _find(store, "teal") == ["a1"]
    _import(store, [ItemRecord("a1", "Art. 4712", "", "Dress")])  # the merchant updates the item
    assert _find(store, "teal") == ["a1"] and _find(store, "4712") == ["a1"]
    with store.session() as s:
        set_flags(s, ["a1"], hidden=True)
    assert _find(store, "teal") == []
    with store.session() as s:
        set_flags(s, ["a1"], hidden=False)
    assert _find(store, "teal") == ["a1"]
    with store.session() as s:
        assert remove_descriptions(s, [_pks(store)["a1"]]) == 1
    assert _find(store, "teal") == [] and _find(store, "4712") == ["a1"]
    with store.session() as s:  # plain SQL: the triggers follow
        s.execute(update(ItemDescription).values(text="Mustard tee."))
        assert s.get(ItemDescription, _pks(store)["a3"]) is not None
    assert _find(store, "olive") == [] and _find(store, "mustard") == ["a3"]
    with store.session() as s:
        s.execute(delete(Item).where(Item.external_id == "a3"))  # cascades to its description
        assert s.scalars(select(ItemDescription)).all() == []
    assert _find(store, "mustard") == []
    table = "items_fts" if store.dialect == "sqlite" else "item_search"
    with store.reading() as c:  # exactly one row per live item
        assert c.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 2


def test_downgrade_drops_generated_words_from_the_index(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    _import(store, ITEMS)
    _describe(store, {"a1": "Crimson dress."})
    with store.session() as s:
        assert description_details(s, _pks(store)["a1"]) is not None
    store.downgrade("0005")
    assert _indexed(store, "crimson") == [] and _indexed(store, "4711") == [_pks(store)["a1"]]
    store.upgrade()
    assert _find(store, "4711") == ["a1"]
    store.dispose()


def _rename(title: str) -> Callable[[Session], None]:
    return lambda s: s.execute(update(Item).where(Item.external_id == "a1").values(title=title))


def _describe_in(store: Store, text_: str) -> Callable[[Session], None]:
    pk = _pks(store)["a1"]

    def write(s: Session) -> None:
        replace_descriptions(s, [GeneratedDescription(pk, text_)])
    return write


def _second_waits_for_first(store: Store, first: Callable[[Session], None], second: Callable[[Session], None]) -> None:
    """``first`` writes and keeps its transaction open until ``second``, in another connection, is waiting for one of
    its locks; then ``first`` commits and ``second`` finishes (its error, if any, is raised here)."""
    pid: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with store.session() as s:
                pid.append(s.execute(text("SELECT pg_backend_pid()")).scalar_one())
                second(s)
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    def waiting() -> bool:
        with store.reading() as c:
            return bool(pid) and c.execute(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity "
                                                "WHERE pid = :p"), {"p": pid[0]}).scalar() is True

    with store.session() as s:
        first(s)
        s.flush()
        writer = threading.Thread(target=run)
        writer.start()
        while writer.is_alive() and not waiting():
            time.sleep(0.005)
    writer.join()
    if errors:
        raise errors[0]


def _exact(store: Store) -> bool:
    """Whether the index holds what the triggers would write now (rewriting every item changes nothing)."""
    table = "items_fts" if store.dialect == "sqlite" else "item_search"
    rows = text(f"SELECT * FROM {table} ORDER BY 1" if table == "item_search" else
                "SELECT rowid, * FROM items_fts ORDER BY rowid")
    with store.engine.connect() as c:
        before = [tuple(map(str, r)) for r in c.execute(rows)]
        c.execute(update(Item).values(title=Item.title))
        after = [tuple(map(str, r)) for r in c.execute(rows)]
        c.rollback()
    return before == after


@pytest.mark.parametrize("description_first", [False, True])
def test_concurrent_item_and_description_writes_leave_the_index_exact(store: Store, description_first: bool) -> None:
    """PostgreSQL: the two writers of an item's document queue on its row, and the later builds it from what the
    earlier committed (each used to build it from the other's old state, leaving the old title or no description)."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    _import(store, [ItemRecord("a1", "Leopard tights", "Sheer tights.", "Tights")])
    writes = [_rename("Zebra tights"), _describe_in(store, "Striped tights.")]
    _second_waits_for_first(store, *(writes[::-1] if description_first else writes))
    assert _find(store, "zebra") == ["a1"] and _find(store, "leopard") == []
    assert _find(store, "striped") == ["a1"]
    assert _exact(store)


def test_concurrent_first_descriptions_of_one_item_both_succeed(store: Store) -> None:
    """PostgreSQL: two runs describing the same item at once (a delete then insert each used to find no row, insert,
    and the later fail on the duplicate key): the later commit wins."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    _import(store, ITEMS)
    _second_waits_for_first(store, _describe_in(store, "Crimson dress."), _describe_in(store, "Teal dress."))
    with store.session() as s:
        assert list(generated_texts(s).values()) == ["Teal dress."]
    assert _find(store, "teal") == ["a1"] and _find(store, "crimson") == []
    assert _exact(store)


def test_an_item_deleted_by_plain_sql_takes_its_description_along(tmp_path: Path) -> None:
    """SQLite reuses a deleted item's id; a client with foreign keys off (sqlite3's default) used to leave the
    description behind for the next new item. Orphans from before migration 0010 are removed by it."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.upgrade("0009")

    def plain_delete(item_id: str) -> None:
        con = sqlite3.connect(str(tmp_path / "r.db"))  # foreign keys off
        con.execute("DELETE FROM items WHERE external_id = ?", (item_id,))
        con.commit()
        con.close()

    _import(store, ITEMS)
    _describe(store, {"a2": "Leopard print top.", "a3": "Olive tee."})
    plain_delete("a2")  # an orphan, before the migration
    store.upgrade()
    plain_delete("a3")  # the newest: the next new items get the ids of a2 and a3
    _import(store, [ItemRecord("b8", "Plain white shirt", "", "Shirt"), ItemRecord("b9", "Plain top", "", "Top")])
    assert (_pks(store)["b8"], _pks(store)["b9"]) == (2, 3)
    with store.session() as s:
        assert item_details(s, "b8")["generated_description"] is None
        assert item_details(s, "b9")["generated_description"] is None
        assert s.scalars(select(ItemDescription)).all() == []
    assert _find(store, "olive") == [] and _find(store, "leopard") == []
    assert _exact(store)
    store.dispose()


def test_matches_only_through_the_generated_text_are_told_apart(store: Store) -> None:
    from recsys.store.lexical import LexicalIndex, generated_only

    _import(store, [*ITEMS, ItemRecord("a4", "Printed poster tee", "", "T-shirt")])
    _describe(store, {"a1": "Purple printed poster.", "a3": "Striped tee.", "a4": "Purple printed poster."})
    with store.reading() as c:
        found = [i for i, _ in lexical_search(c, "printed posters", 50)]
        assert sorted(found) == ["a1", "a4"]
        # a1's own text ("Art. 4711") has neither word; a4's title has both (stemmed alike: "posters")
        assert generated_only(c, "printed posters", found) == {"a1"}
        assert generated_only(c, "tee", ["a3", "a4"]) == set()  # in the merchant's text too
        assert generated_only(c, "striped", ["a3"]) == {"a3"}
        assert generated_only(c, "strap", ["a2"]) == set()  # no generated description at all
    index = LexicalIndex(store)
    assert sorted(i for i, _ in index.search("purple", 10)) == ["a1", "a4"]  # the service asks after a search
    assert index.generated_only("purple", ["a1", "a4"]) == {"a1", "a4"}
