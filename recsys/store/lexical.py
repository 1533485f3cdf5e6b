"""Keyword search over the live items' text: the lexical index that migration 0004 keeps by database triggers.

SQLite: FTS5 table ``items_fts`` ranked by BM25 with per-column weights (title first). PostgreSQL: ``item_search``'s
weighted ``english`` tsvectors (title first) ranked by ``ts_rank`` per word, weighted by the word's rarity. Both stem
English words (porter / snowball), so "dresses" finds "dress". A query is split into words and the words are OR-ed:
an item matching more of them, or rarer ones, ranks higher; nothing of the query's own syntax reaches the database
(no FTS operators, no injection).

Both databases split text into runs of letters and digits, as :func:`query_terms` splits the query, and fold Latin
diacritics: "P-0777" is the words "p" and "0777", "1.5" is "1" and "5", "www.acme.com" finds "acme", "cafe" finds
"Café". They fold ß, æ, œ, ł, ø, đ and ı too (:data:`FOLDS`, migration 0013): "grosse" finds "Größe", "lodz"
"Łódź"; a soft hyphen inside a word does not split it; PostgreSQL composes decomposed (NFD) text first, as FTS5
ignores its marks. A query word keeps its combining marks (the vowel signs of Hindi, Tamil, Thai...: "कुर्ता" is one
word) and each database splits it as it split the documents: FTS5 matches it as a phrase of its own tokens (it cuts
such words at spacing marks), PostgreSQL parses it with the documents' parser (``plainto_tsquery``). On PostgreSQL,
each query word goes through the documents' own ``recsys_search_words`` (migration 0010), and each part of an item's
text is indexed up to a bound (a tsvector holds 1 MB): its first 20,000 characters of title, 60,000 of description,
50,000 of attribute values, 20,000 of generated description.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, inspect, text

if TYPE_CHECKING:
    from recsys.store.db import Store

log = logging.getLogger(__name__)

MAX_TERMS = 32
"""Words of a query that are searched (the first ones); a pasted paragraph must not become a 500-way OR."""
SQLITE_WEIGHTS = (5.0, 1.0, 2.0, 2.0)
"""BM25 weights of the FTS5 columns: title, description, category, attribute values."""

_SQLITE = text(
    "SELECT i.external_id, bm25(items_fts, {}) AS rank FROM items_fts JOIN items i ON i.id = items_fts.rowid "
    "WHERE items_fts MATCH :q AND NOT (i.hidden IS 1 OR i.deleted IS 1) ORDER BY rank, i.id LIMIT :n"
    .format(", ".join(str(w) for w in SQLITE_WEIGHTS)))
_PG_WORD = "plainto_tsquery('english', recsys_search_words({}))"
"""A query word as the documents' words (plainto: the normalised word may be several, or none)."""
_PG_COUNTS = text(
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM item_search WHERE document @@ w.q LIMIT :cap) m) "
    f"FROM unnest(CAST(:terms AS text[])) WITH ORDINALITY AS t(term, i), LATERAL (SELECT {_PG_WORD.format('t.term')} "
    "AS q) w ORDER BY t.i")
_PG_SIZE = text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'item_search'::regclass")
_PG_COUNT = text("SELECT count(*) FROM item_search")
_PG_SEARCH = ("SELECT i.external_id, {rank} AS rank FROM item_search s JOIN items i ON i.id = s.item_id "
              "WHERE s.document @@ ({query}) AND NOT (i.hidden IS TRUE OR i.deleted IS TRUE) "
              "ORDER BY rank DESC, i.id LIMIT :n")
_PG_WORDS_FUNCTION = text("SELECT to_regprocedure('recsys_search_words(text)') IS NOT NULL")
DF_CAP = 100_000
"""Matches counted per word for its rarity (PostgreSQL): beyond this a word is common enough."""
TABLES = {"sqlite": "items_fts", "postgresql": "item_search"}
_ENGLISH_STOP = """
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it its
itself they them their theirs themselves what which who whom this that these those am is are was were be been being
have has had having do does did doing a an the and but if or because as until while of at by for with about against
between into through during before after above below to from up down in out on off over under again further then once
here there when where why how all any both each few more most other some such no nor not only own same so than too
very s t can will just don should now"""
STOP_WORDS = frozenset(_ENGLISH_STOP.split())
"""PostgreSQL's ``english`` stop words (tsearch_data/english.stop), which its documents and queries drop: dropped
from SQLite's queries too, so "the", "and" or "with" match nothing on either database instead of nearly every item
on SQLite alone."""


FOLDS = {"ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ł": "l", "Ł": "l", "ø": "o", "Ø": "o",
         "đ": "d", "Đ": "d", "ı": "i", "\u00ad": "", "\u2060": ""}
"""What both databases fold besides diacritics (migration 0013, whose tables these must equal): letters that have no
decomposition to fold; a soft hyphen and a word joiner are dropped, so they do not split a word. Full-width forms
(NFKC) are not folded, on either database: SQLite's triggers cannot."""
_FOLD = str.maketrans(FOLDS)


def query_terms(query: str) -> list[str]:
    """The distinct words of ``query``, lower-cased, in order: runs of letters, digits and combining marks (a mark
    belongs to its letter: splitting there left PostgreSQL no word to match), each with a letter or digit;
    punctuation splits words. Composed first (NFC), as the documents' diacritics are folded in composed form, then
    folded by :data:`FOLDS` as the documents are ("Größe" is "grösse", "Łódź" "lódź"). A
    capital dotted I lower-cases to "i" and a combining dot, which PostgreSQL split the word at ("İstanbul" found
    nothing there): it is a plain "i", as the databases fold the documents' "İ". Stop words are left out
    (:data:`STOP_WORDS`), compared with diacritics folded (:func:`folded`): FTS5 folds "thé" to "the", which
    SQLite's documents index, so it matched nearly every item there; PostgreSQL folds it first and drops it."""
    query = unicodedata.normalize("NFC", query).translate(_FOLD)
    spaced = "".join(c if c.isalnum() or unicodedata.category(c)[0] == "M" else " " for c in query)
    words = (w.lower().replace("i\u0307", "i") for w in spaced.split() if any(c.isalnum() for c in w))
    return [w for w in dict.fromkeys(words) if folded(w) not in STOP_WORDS][:MAX_TERMS]


def folded(word: str) -> str:
    """``word`` with its diacritics folded, as the databases fold it (FTS5's ``remove_diacritics 2``, PostgreSQL's
    ``recsys_search_words``): "thé" is "the", "wíth" "with", a long s an "s", a dotless "ıt" "it" (:data:`FOLDS`).
    Every combining mark goes: FTS5 does not index one as part of a word, so "the" with a stray mark is the word
    "the" to it."""
    return "".join(c for c in unicodedata.normalize("NFD", word.translate(_FOLD))
                   if unicodedata.category(c)[0] != "M").replace("\u017f", "s")


def available(conn: Connection) -> bool:
    """Whether this database has the lexical index (migration 0004 on SQLite; 0004 and 0010 on PostgreSQL)."""
    table = TABLES.get(conn.dialect.name)
    if table is None or not inspect(conn).has_table(table):
        return False
    return conn.dialect.name != "postgresql" or bool(conn.execute(_PG_WORDS_FUNCTION).scalar())


def lexical_search(conn: Connection, query: str, limit: int) -> list[tuple[str, float]]:
    """Up to ``limit`` live items matching any word of ``query``: (item id, score), best first (higher is better).

    Empty for a query without words, and on a database without a lexical index (logged once per call).
    """
    terms = query_terms(query)
    if not terms or limit <= 0:
        return []
    dialect = conn.dialect.name
    if dialect == "sqlite":
        rows = conn.execute(_SQLITE, {"q": _fts5_query(terms), "n": limit}).all()
        return [(str(i), -float(r)) for i, r in rows]
    if dialect == "postgresql":
        return _pg_search(conn, terms, limit)
    log.warning("no lexical index on %s databases; keyword search returns nothing", dialect)
    return []


def _pg_search(conn: Connection, terms: Sequence[str], limit: int) -> list[tuple[str, float]]:
    """ts_rank knows no word rarity (one common word of the query counts as much as a rare one), so each word's
    ts_rank is weighted by its BM25 inverse document frequency, counted on the GIN index (bounded by DF_CAP)."""
    counts = [int(c) for c, in conn.execute(_PG_COUNTS, {"terms": list(terms), "cap": DF_CAP})]
    words = [(t, c) for t, c in zip(terms, counts, strict=True) if c > 0]  # stop words and unknown words drop out
    if not words:
        return []
    n = max(_pg_size(conn), *(c for _, c in words))
    params: dict[str, object] = {"n": limit}
    parts, query = [], []
    for j, (t, c) in enumerate(words):
        params[f"t{j}"], params[f"w{j}"] = t, math.log(1 + (n - c + 0.5) / (c + 0.5))
        query.append(_PG_WORD.format(f":t{j}"))
        parts.append(f"CAST(:w{j} AS float8) * ts_rank(s.document, {query[-1]})")
    rows = conn.execute(text(_PG_SEARCH.format(rank=" + ".join(parts), query=" || ".join(query))), params).all()
    return [(str(i), float(r)) for i, r in rows]


def _pg_size(conn: Connection) -> int:
    """The catalogue's size for the rarity weights: the planner's estimate, or a count where the table was never
    analysed (-1: a new store before autovacuum's first pass, or a server without it, where the most common query
    word would otherwise weigh nothing)."""
    size = int(conn.execute(_PG_SIZE).scalar() or 0)
    return size if size >= 0 else int(conn.execute(_PG_COUNT).scalar() or 0)


GENERATED = "generated"
"""The source a search result also carries when its words are only in its generated description."""
MERCHANT_LIMITS = {"title": 20_000, "category": 1_000, "attrs": 50_000, "description": 60_000}
"""Characters of each merchant part that PostgreSQL's document indexes (migration 0010's ``LIMITS``)."""
_DESCRIBED = text("SELECT i.external_id, i.id FROM item_descriptions d JOIN items i ON i.id = d.item_id "
                  "WHERE i.external_id IN :ids").bindparams(bindparam("ids", expanding=True))
_SQLITE_MERCHANT = text("SELECT rowid FROM items_fts WHERE items_fts MATCH :q AND rowid IN :pks"
                        ).bindparams(bindparam("pks", expanding=True))
_PG_ATTRS = ("CASE WHEN json_typeof(i.attributes) = 'object' THEN (SELECT string_agg(value, ' ') "
             "FROM json_each_text(i.attributes)) END")


def generated_only(conn: Connection, query: str, item_ids: Sequence[str]) -> set[str]:
    """Which of ``item_ids`` (keyword matches of ``query``) match it only through their generated description: no
    word of the query is in the merchant's title, description, category or attribute values (stemmed alike)."""
    terms = query_terms(query)
    described: dict[str, int] = dict(conn.execute(_DESCRIBED, {"ids": list(item_ids)}).tuples().all()) if terms else {}
    if not described:
        return set()
    pks = list(described.values())
    if conn.dialect.name == "sqlite":  # FTS5's column filter (the merchant's columns), held to the hits' rows
        q = "{title description category attrs} : (" + _fts5_query(terms) + ")"
        merchant = set(conn.execute(_SQLITE_MERCHANT, {"q": q, "pks": pks}).scalars())
        return {str(i) for i, pk in described.items() if pk not in merchant}
    if conn.dialect.name != "postgresql":
        return set()
    parts = {"title": "i.title", "category": "i.category", "attrs": _PG_ATTRS, "description": "i.description"}
    document = " || ".join(f"to_tsvector('english', recsys_search_words(left(coalesce({expr}, ''), "
                           f"{MERCHANT_LIMITS[name]})))" for name, expr in parts.items())
    params: dict[str, object] = {f"t{j}": t for j, t in enumerate(terms)}
    words = " || ".join(_PG_WORD.format(f":t{j}") for j in range(len(terms)))
    sql = text(f"SELECT i.external_id FROM items i WHERE i.id IN :pks AND NOT (({document}) @@ ({words}))"
               ).bindparams(bindparam("pks", expanding=True))
    return {str(i) for i in conn.execute(sql, {**params, "pks": pks}).scalars()}


def _fts5_query(terms: Sequence[str]) -> str:
    """Each word as an FTS5 string (quoted: no operators), OR-ed."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class LexicalIndex:
    """:func:`lexical_search` on a store's connections; whether the index exists is checked once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._available: bool | None = None

    def search(self, query: str, limit: int) -> list[tuple[str, float]]:
        with self.store.reading() as c:
            if self._available is None:
                self._available = available(c)
                if not self._available:
                    log.warning("the database has no lexical index (migrations 0004, 0010); text search uses vectors "
                                "only")
            return lexical_search(c, query, limit) if self._available else []

    def generated_only(self, query: str, item_ids: Sequence[str]) -> set[str]:
        """:func:`generated_only` on the store (its keyword matches come from :meth:`search`, which has checked
        that the index exists)."""
        if not item_ids or not self._available:
            return set()
        with self.store.reading() as c:
            return generated_only(c, query, item_ids)
