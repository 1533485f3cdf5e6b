"""The same word written differently is found alike on SQLite and PostgreSQL (migration 0013, intl audit D1, D3, D4).

ß/ss, ł/l, ø/o, đ/d, ı/i, æ/ae, œ/oe did not meet on either database; a soft hyphen or a word joiner split a word;
PostgreSQL split text stored decomposed (NFD) at each combining mark, so "Crêpe façon grand-mère" written so was
found by none of its words but "grand"."""

from __future__ import annotations

import unicodedata

import pytest
from sqlalchemy import select, text, update

from recsys.store import Store
from recsys.store.descriptions import GeneratedDescription, replace_descriptions
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from recsys.store.lexical import FOLDS, folded, lexical_search, query_terms
from recsys.store.tables import Item

ITEMS = [
    ItemRecord("de-1", "Größe XL Winterjacke", "", "Jacket"),
    ItemRecord("de-2", "STRASSE Schild", "", "Sign"),
    ItemRecord("pl-1", "Koszulka Łódź", "", "Shirt"),
    ItemRecord("dk-1", "Smørrebrød platter", "", "Plate"),
    ItemRecord("hr-1", "Đakovo vez", "", "Textile", attributes={"region": "Slavonija"}),
    ItemRecord("tr-1", "Kadın elbise", "", "Dress"),
    ItemRecord("la-1", "Encyclopædia", "", "Book", attributes={"series": "Œuvres complètes"}),
    ItemRecord("shy-1", "Über\u00adgangs\u00adjacke warm", "", "Jacket"),
    ItemRecord("wj-1", "Kinder\u2060wagen", "", "Pram"),
    ItemRecord("nfd-1", unicodedata.normalize("NFD", "Crêpe façon grand-mère"), "", "Food"),
]
FOUND = [
    ("grosse", "de-1"), ("GRÖSSE", "de-1"), ("größe", "de-1"), ("GRÖẞE", "de-1"), ("straße", "de-2"),
    ("strasse", "de-2"), ("lodz", "pl-1"), ("ŁÓDŹ", "pl-1"), ("smorrebrod", "dk-1"), ("Smørrebrød", "dk-1"),
    ("dakovo", "hr-1"), ("đakovo", "hr-1"), ("kadin", "tr-1"), ("KADIN", "tr-1"), ("kadın", "tr-1"),
    ("encyclopaedia", "la-1"), ("ENCYCLOPÆDIA", "la-1"), ("oeuvres", "la-1"), ("œuvres", "la-1"),
    ("übergangsjacke", "shy-1"), ("ubergangsjacke", "shy-1"), ("über\u00adgangs\u00adjacke", "shy-1"),
    ("kinderwagen", "wj-1"), ("crepe", "nfd-1"), ("crêpe", "nfd-1"), ("facon", "nfd-1"), ("façon", "nfd-1"),
    ("mere", "nfd-1"), (unicodedata.normalize("NFD", "mère"), "nfd-1"),
]


def _import(store: Store, records: list[ItemRecord]) -> None:
    with store.session() as s:
        upsert_items(s, records, TableCounts())


def _find(store: Store, query: str) -> list[str]:
    with store.reading() as c:
        return [i for i, _ in lexical_search(c, query, 10)]


def _indexed(store: Store, word: str) -> list[str]:
    """The items whose index row holds ``word`` as given (no query folding: any schema revision)."""
    sql = ("SELECT i.external_id FROM items_fts JOIN items i ON i.id = items_fts.rowid WHERE items_fts MATCH :w"
           if store.dialect == "sqlite" else "SELECT i.external_id FROM item_search s JOIN items i ON i.id = "
           "s.item_id WHERE s.document @@ plainto_tsquery('english', :w)")
    with store.reading() as c:
        return sorted(c.execute(text(sql), {"w": f'"{word}"' if store.dialect == "sqlite" else word}).scalars())


def _lexical_state(store: Store) -> tuple[list[str], list[str]]:
    """The lexical index's definitions (triggers and FTS table; the words function) and its rows."""
    sqlite = store.dialect == "sqlite"
    definitions = ("SELECT sql FROM sqlite_master WHERE name LIKE 'item%fts%' AND sql IS NOT NULL ORDER BY name"
                   if sqlite else "SELECT prosrc FROM pg_proc WHERE proname LIKE 'recsys%' ORDER BY proname")
    rows = "SELECT rowid, * FROM items_fts ORDER BY rowid" if sqlite else "SELECT * FROM item_search ORDER BY 1"
    with store.reading() as c:
        return list(c.execute(text(definitions)).scalars()), [str(tuple(r)) for r in c.execute(text(rows))]


def _missed(store: Store) -> list[str]:
    return [f"{q!r} -> {got}" for q, want in FOUND if (got := _find(store, q)) != [want]]


def test_query_words_are_folded_as_the_documents_are() -> None:
    assert query_terms("GRÖSSE Größe Łódź Smørrebrød ENCYCLOPÆDIA Kadın") == [
        "grösse", "lódź", "smorrebrod", "encyclopaedia", "kadin"]
    assert query_terms("Über\u00adgangs\u2060jacke") == ["übergangsjacke"]  # dropped, not a word break
    assert query_terms("red\u200bdress") == ["red", "dress"]  # a zero-width space still separates (Thai, Khmer)
    assert folded("ıt") == "it" and query_terms("ıt ın ＡＢＣ") == ["ａｂｃ"]  # stop words; full-width left alone


def test_spellings_of_a_word_meet_on_both_databases(store: Store) -> None:
    _import(store, ITEMS)
    assert _missed(store) == []
    assert _find(store, "jacke") == []  # "Übergangsjacke" is one word: the soft hyphens no longer split it
    with store.session() as s:  # what users see is the text as written: only the index holds it folded
        assert s.scalar(select(Item.title).where(Item.external_id == "de-1")) == "Größe XL Winterjacke"


def test_every_write_path_folds(store: Store) -> None:
    """The triggers on items (update, plain SQL) and on generated descriptions index folded text too."""
    _import(store, [ItemRecord("x-1", "Plain mug", "", "Mug")])
    with store.session() as s:
        s.execute(update(Item).where(Item.external_id == "x-1").values(description="Wzór: Żółta łódka"))
        pk = s.scalar(select(Item.id).where(Item.external_id == "x-1"))
    assert _find(store, "lodka") == ["x-1"] and _find(store, "zolta") == ["x-1"]
    with store.session() as s:
        assert pk is not None
        replace_descriptions(s, [GeneratedDescription(pk, "Große Tasse aus Ærø")])
    assert _find(store, "grosse") == ["x-1"] and _find(store, "aero") == ["x-1"]


def test_the_migration_refolds_existing_items_and_its_downgrade_restores_0012(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.upgrade("0012")
        _import(store, ITEMS)
        assert _indexed(store, "grosse") == [] and _indexed(store, "lodz") == []  # 0012: not folded
        before = _lexical_state(store)
        store.upgrade()
        assert _missed(store) == []
        assert _indexed(store, "grosse") == ["de-1"] and _indexed(store, "lodz") == ["pl-1"]
        store.downgrade("0012")
        assert _lexical_state(store) == before  # 0012's triggers, function and index rows
        assert _indexed(store, "smorrebrod") == [] and _indexed(store, "smørrebrød") == ["dk-1"]
        _import(store, [ItemRecord("dk-2", "Ørsted lamp", "", "Lamp")])  # 0012's triggers work again
        assert _indexed(store, "orsted") == [] and _indexed(store, "ørsted") == ["dk-2"]
        store.upgrade()
        assert _missed(store) == [] and _find(store, "orsted") == ["dk-2"]
    finally:
        store.dispose()


def test_postgresql_folds_as_the_query_side_does(store: Store) -> None:
    """recsys_search_words (migration 0013) and recsys.store.lexical.FOLDS fold the same characters alike."""
    if store.dialect != "postgresql":
        pytest.skip("PostgreSQL's recsys_search_words")
    with store.reading() as c:
        for char, to in FOLDS.items():
            got = c.execute(text("SELECT recsys_search_words(:w)"), {"w": f"x{char}y"}).scalar()
            assert got == f"x{to}y", char
        nfd = unicodedata.normalize("NFD", "Crêpe")
        assert c.execute(text("SELECT recsys_search_words(:w)"), {"w": nfd}).scalar() == "Crepe"
