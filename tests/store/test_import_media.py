"""A generated description goes with the images it was written from: an import or upsert that gives an item other
images drops it, and its words leave the keyword index; one that changes the item's text, price or the images'
order keeps it (on SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import select

from recsys.store import Store
from recsys.store.descriptions import GeneratedDescription, generated_texts, replace_descriptions
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from recsys.store.lexical import lexical_search
from recsys.store.tables import Item

RED = [("image", "/photos/red_dress.jpg"), ("image", "/photos/red_back.jpg")]


def _import(store: Store, records: list[ItemRecord]) -> TableCounts:
    counts = TableCounts()
    with store.session() as s:
        upsert_items(s, records, counts)
    return counts


def _described(store: Store) -> dict[str, str]:
    with store.session() as s:
        ids = dict(s.execute(select(Item.id, Item.external_id)).all())
        return {ids[pk]: t for pk, t in generated_texts(s).items()}


def _describe(store: Store, texts: dict[str, str]) -> None:
    with store.session() as s:
        pks = dict(s.execute(select(Item.external_id, Item.id)).all())
        replace_descriptions(s, [GeneratedDescription(pks[i], t, source="zero-shot:test") for i, t in texts.items()])


def _find(store: Store, query: str) -> list[str]:
    with store.reading() as c:
        return [i for i, _ in lexical_search(c, query, 50)]


def test_other_images_drop_the_generated_description_other_changes_keep_it(store: Store) -> None:
    _import(store, [ItemRecord("a1", "Art. 7", "", "dress", media=RED),
                    ItemRecord("a2", "Art. 8", "", "top", media=[("image", "/photos/teal_top.jpg")]),
                    ItemRecord("a3", "Art. 9", "", "scarf", media=[("image", "/photos/olive_scarf.jpg")])])
    _describe(store, {"a1": "Crimson dress.", "a2": "Teal top.", "a3": "Olive scarf."})
    # the merchant's text and price change, and the same photos come in another order: still what they show
    counts = _import(store, [ItemRecord("a1", "Art. 7 dress", "Long.", "dress", price=9.0, media=RED[::-1]),
                             ItemRecord("a3", "Art. 9", "", "scarf", media=[("image", "/photos/olive_scarf.jpg")])])
    assert counts.updated == 1 and counts.unchanged == 1
    price_feed = ItemRecord("a2", price=5.0, given=frozenset({"price"}))  # keeps the stored photos
    _import(store, [price_feed])
    assert _described(store) == {"a1": "Crimson dress.", "a2": "Teal top.", "a3": "Olive scarf."}
    assert _find(store, "crimson") == ["a1"] and _find(store, "teal") == ["a2"]
    # new photos (one added, one replaced, all of them gone): the text said what the old ones showed
    _import(store, [ItemRecord("a1", "Art. 7 dress", "Long.", "dress", price=9.0,
                               media=[*RED, ("image", "/photos/blue_top.jpg")]),
                    ItemRecord("a2", media=[("image", "/photos/blue_top.jpg")], given=frozenset({"media"}))])
    assert _described(store) == {"a3": "Olive scarf."}
    assert _find(store, "crimson") == [] and _find(store, "teal") == [] and _find(store, "olive") == ["a3"]
    assert _find(store, "dress") == ["a1"]  # the merchant's words stay
    _import(store, [ItemRecord("a3", "Art. 9", "", "scarf")])
    assert _described(store) == {} and _find(store, "olive") == []
