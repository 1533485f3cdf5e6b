"""Generated descriptions (migration 0006) on SQLite and PostgreSQL: stored apart from the merchant's text, replaced
on re-run, and covered by the lexical index under every write."""

from __future__ import annotations

from sqlalchemy import delete, select, text, update

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
    assert _find(store, "crimson") == [] and _find(store, "4711") == ["a1"]
    store.upgrade()
    assert _find(store, "4711") == ["a1"]
    store.dispose()
