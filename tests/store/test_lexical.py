"""The lexical index (migration 0004) on SQLite and PostgreSQL: found words, and exactness under every write."""

from __future__ import annotations

from sqlalchemy import delete, text, update

from recsys.store import Store
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from recsys.store.items import set_flags
from recsys.store.lexical import LexicalIndex, available, lexical_search, query_terms
from recsys.store.tables import Item

ITEMS = [
    ItemRecord("a1", "Leopard tights 1p", "Sheer tights with a leopard print.", "Tights",
               attributes={"colour": "Beige"}),
    ItemRecord("a2", "Strap top", "Jersey top with narrow shoulder straps.", "Vest top",
               attributes={"colour": "Black", "product_code": "108775"}),
    ItemRecord("a3", "Odessa dress", "Long dress in woven fabric.", "Dress", attributes={"colour": "Black"}),
    ItemRecord("a4", "Ritz blazer", "Jacket in a wool blend, café style.", "Blazer",
               attributes={"tags": ["mooncake", "party"]}),
]


def _import(store: Store, records: list[ItemRecord]) -> None:
    with store.session() as s:
        upsert_items(s, records, TableCounts())


def _find(store: Store, query: str, limit: int = 50) -> list[str]:
    with store.reading() as c:
        return [i for i, _ in lexical_search(c, query, limit)]


def test_words_names_attributes_and_codes_are_found(store: Store) -> None:
    _import(store, ITEMS)
    with store.reading() as c:
        assert available(c)
    assert _find(store, "leopard") == ["a1"]
    assert _find(store, "ODESSA!") == ["a3"]
    assert _find(store, "dresses") == ["a3"]  # stemmed
    assert _find(store, "108775") == ["a2"]  # an attribute value (a product code)
    assert _find(store, "mooncake") == ["a4"]  # a value inside a list attribute
    assert _find(store, "blazer") == ["a4"]
    assert _find(store, "nothing-like-this") == []
    assert _find(store, "!!! ***") == []  # no words: nothing, and no syntax error
    assert _find(store, 'black" OR "x') and _find(store, "AND (") == []  # operators are words, never syntax


def test_rank_prefers_the_title_and_more_words(store: Store) -> None:
    _import(store, [*ITEMS, ItemRecord("a5", "Basic top", "A top to wear under an odessa dress.", "Top")])
    assert _find(store, "odessa")[0] == "a3"  # in the title beats in the description
    assert _find(store, "black dress")[0] == "a3"  # both words beat one
    assert set(_find(store, "black dress")) == {"a2", "a3", "a5"}  # any word matches
    assert _find(store, "odessa", limit=1) == ["a3"]


def test_a_rare_word_outweighs_a_common_one(store: Store) -> None:
    common = [ItemRecord(f"b{j}", f"Black top {j}", "A black top in black jersey.", "Top") for j in range(12)]
    _import(store, [*ITEMS, *common])
    assert _find(store, "black ritz")[0] == "a4"  # one rare word in the title beats a common word three times


def test_index_follows_upsert_hide_and_delete(store: Store) -> None:
    _import(store, ITEMS)
    _import(store, [ItemRecord("a1", "Zebra tights", "Sheer tights.", "Tights")])  # update through the importer
    assert _find(store, "leopard") == []
    assert _find(store, "zebra") == ["a1"]
    with store.session() as s:
        set_flags(s, ["a1"], hidden=True)
    assert _find(store, "zebra") == []
    with store.session() as s:
        set_flags(s, ["a1"], hidden=False)
    assert _find(store, "zebra") == ["a1"]
    with store.session() as s:
        set_flags(s, ["a3"], deleted=True)
    assert _find(store, "odessa") == []
    _import(store, [ItemRecord("a3", "Odessa dress", "Long dress.", "Dress")])  # re-imported: live again
    assert _find(store, "odessa") == ["a3"]
    with store.session() as s:  # plain SQL writes are followed too (triggers, not application code)
        s.execute(update(Item).where(Item.external_id == "a3").values(title="Lisbon dress"))
        s.execute(delete(Item).where(Item.external_id == "a4"))
    assert _find(store, "odessa") == [] and _find(store, "lisbon") == ["a3"]
    assert _find(store, "ritz") == [] and _find(store, "mooncake") == []
    table = "items_fts" if store.dialect == "sqlite" else "item_search"
    with store.reading() as c:  # exactly one row per live item
        assert c.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 3


def test_existing_items_are_backfilled_by_the_migration(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade("0003")
    _import(store, ITEMS)
    with store.session() as s:
        set_flags(s, ["a2"], hidden=True)
    store.upgrade()
    assert _find(store, "leopard") == ["a1"]
    assert _find(store, "strap") == []  # hidden before the migration: not indexed
    store.downgrade("0003")
    with store.reading() as c:
        assert not available(c)
    assert LexicalIndex(store).search("leopard", 10) == []  # no index: nothing, not an error
    store.dispose()


def test_query_terms() -> None:
    assert query_terms("Leopard-print  tights, LEOPARD") == ["leopard", "print", "tights"]
    assert query_terms("snake_case café") == ["snake", "case", "café"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == 32
