"""The lexical index (migration 0004) on SQLite and PostgreSQL: found words, and exactness under every write."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, text, update

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


CODES = [
    ItemRecord("i0", "Leggings", "Leggings.", "Tights", attributes={"product_code": "P-0999"}),
    ItemRecord("i1", "Tights", "Sheer tights.", "Tights", attributes={"product_code": "P-0777"}),
    ItemRecord("i2", "Shirt AB-1234", "Cotton shirt.", "Shirt"),
    ItemRecord("i3", "Cable 1.5 m", "USB cable.", "Cable"),
    ItemRecord("i4", "Lamp", "See www.acme.com or manual_v2.pdf", "Lamp"),
    ItemRecord("i5", "Plain top", "A top.", "Top"),
    ItemRecord("i6", "Café mug", "Crème colour.", "Mug"),
    ItemRecord("i7", "Cafe table", "Naive art.", "Table"),
]


def test_codes_decimals_hosts_file_names_and_accents_are_found_alike(store: Store) -> None:
    """Both databases split text into letters-and-digits words, as the query is split, and fold diacritics."""
    _import(store, CODES)
    assert _find(store, "P-0777")[0] == "i1"  # both words of the code beat the shared "p"
    assert _find(store, "0777") == ["i1"] and _find(store, "p0777") == []
    assert _find(store, "AB-1234") == ["i2"] and _find(store, "1234") == ["i2"]
    assert _find(store, "1.5") == ["i3"]
    assert _find(store, "acme") == ["i4"] and _find(store, "www.acme.com") == ["i4"]
    assert _find(store, "manual") == ["i4"] and _find(store, "manual_v2.pdf") == ["i4"]
    assert set(_find(store, "cafe")) == set(_find(store, "Café")) == {"i6", "i7"}
    assert _find(store, "creme") == ["i6"] and _find(store, "naïve") == ["i7"]


def test_existing_documents_are_rebuilt_with_the_same_words(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade("0009")
    _import(store, CODES)
    store.upgrade()
    assert _find(store, "0777") == ["i1"] and _find(store, "cafe")  # the migration rewrote the old documents
    store.downgrade("0009")
    store.upgrade()
    assert _find(store, "0777") == ["i1"]
    store.dispose()


def _dense(n: int, start: int) -> str:
    """About ``n`` characters of distinct one-letter words (CJK, Hangul): the most tsvector per character (6 bytes
    on PostgreSQL)."""
    pool = [*range(0x4E00, 0x9FFF), *range(0x3400, 0x4DBF), *range(0x20000, 0x2A6DF), *range(0xAC00, 0xD7A3)]
    return " ".join(chr(pool[(start + i) % len(pool)]) for i in range(n // 2))


def test_the_longest_allowed_text_is_stored_and_found(store: Store) -> None:
    """An item at the API's limits (title and description of MAX_TEXT, 60 attributes of MAX_ATTRIBUTE_TEXT) and a
    generated description as long, in the densest words, each part's indexed words distinct from the others':
    PostgreSQL indexes each part up to a bound that keeps the document under tsvector's 1 MB. The batch and its other
    item are stored."""
    from recsys.store.descriptions import GeneratedDescription, replace_descriptions
    from recsys.store.limits import MAX_ATTRIBUTE_TEXT, MAX_TEXT

    # Words indexed on PostgreSQL: title 10,000, description 30,000, attributes 25,000, generated 10,000.
    title, description = _dense(MAX_TEXT - 10, 0) + " zzbeyond", _dense(MAX_TEXT, 10_000)
    attrs = {f"a{j:02}": _dense(MAX_ATTRIBUTE_TEXT, 40_000 + 5_000 * j) for j in range(60)}
    _import(store, [ItemRecord("long1", title, description, "Dress", attributes=attrs),
                    ItemRecord("ok1", "Shirt", "", "Shirt")])
    with store.session() as s:
        pk = s.scalar(select(Item.id).where(Item.external_id == "long1"))
        replace_descriptions(s, [GeneratedDescription(pk, _dense(MAX_TEXT, 65_000))])
    assert _find(store, "shirt") == ["ok1"]
    assert _find(store, title[:1]) == ["long1"] and _find(store, description[:1]) == ["long1"]
    # past the title's bound (its 20,000th character): found by SQLite, whose FTS5 has no such limit
    assert _find(store, "zzbeyond") == (["long1"] if store.dialect == "sqlite" else [])


def test_a_value_the_database_refuses_is_a_request_error_not_an_outage(store: Store) -> None:
    """A data or limit error (SQLSTATE 22, 54; psycopg raises the latter as an OperationalError) is the request's
    fault: a 4xx saying so, not "the database is unreachable, retry" (503), which clients retry forever."""
    from recsys.errors import StoreUnavailable, ValidationFailed

    if store.dialect != "postgresql":
        pytest.skip("PostgreSQL's limits")
    with pytest.raises(ValidationFailed, match="refused a value.*too long for tsvector") as exc, store.session() as s:
        s.execute(text("SELECT to_tsvector('simple', string_agg(md5(i::text), ' ')) FROM generate_series(1, 40000) i"))
    assert not isinstance(exc.value, StoreUnavailable)
    with store.session() as s:  # the store still works
        assert s.execute(text("SELECT 1")).scalar() == 1
