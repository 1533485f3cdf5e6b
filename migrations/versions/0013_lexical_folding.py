"""Lexical folding: the same word written differently is found alike on both databases

Keyword search folded only the Latin letters whose canonical decomposition is a base letter and marks, and only in
composed (NFC) text on PostgreSQL. Now, in the documents of both databases and in the query
(``recsys.store.lexical.FOLDS``, which must stay equal to the tables here):

- Letters without such a decomposition fold too: ß and ẞ to "ss", æ to "ae", œ to "oe", ł to "l", ø to "o", đ to
  "d", dotless ı to "i" (and their capitals), so "grosse" finds "Größe", "lodz" "Łódź", "smorrebrod" "Smørrebrød".
- A soft hyphen (U+00AD) or a word joiner (U+2060) inside a word is dropped, not a word break: "Über\u00adgangs"
  is "Übergangs". A zero-width space still separates words (Thai and Khmer mark word breaks with it).
- PostgreSQL composes the text first (``normalize(words, NFC)``, PostgreSQL >= 13 on a UTF8 database): its parser
  split decomposed (NFD) text at each combining mark, so "Crêpe" stored as "e" + U+0302 matched neither "crepe" nor
  "crêpe". FTS5 drops those marks itself.
- Full-width letters and digits and other compatibility forms (NFKC: "ＡＢＣ１２３", "ﬁ") are left alone on both
  databases, which keeps them alike: SQLite's triggers are plain SQL, and its parser takes about 35 nested
  ``replace`` calls in a statement, not the 62 more that full-width letters and digits need.

SQLite: the triggers of 0006 index the folded text (SQLite's ``replace``; its ``lower`` folds ASCII only, so both
cases are replaced), and ``items_fts`` is rebuilt from the live items. Nothing shows the FTS table's text to users
(no snippet or highlight): results are read from ``items``. PostgreSQL: ``recsys_search_words`` (0010) gains the
folds, and documents that change are rewritten in one statement. ASCII text keeps its fast path on both.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import unicodedata

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

MULTI = {"ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe"}
"""Letters that fold to two (``replace``: PostgreSQL's ``translate`` maps one character to one)."""
LETTERS = {"ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ı": "i"}
"""Letters that fold to one: the stroked and dotless ones (no canonical decomposition, so no diacritic fold)."""
DROPPED = "\u00ad\u2060"
"""Soft hyphen and word joiner: invisible inside a word, dropped rather than splitting it."""

LIMITS = {"title": 20_000, "category": 1_000, "attrs": 50_000, "description": 60_000, "generated": 20_000}
"""Characters of each part that PostgreSQL indexes (0010)."""


# -- PostgreSQL -----------------------------------------------------------------------------------------------------
def _diacritics() -> tuple[str, str]:
    """0010's ``translate`` table: Latin letters whose NFD form is an ASCII letter and marks, and the long s."""
    src, dst = ["ſ", "ẛ"], ["s", "s"]
    for cp in (*range(0xC0, 0x250), *range(0x1E00, 0x1F00)):
        parts = unicodedata.normalize("NFD", chr(cp))
        if len(parts) > 1 and parts[0].isascii() and all(unicodedata.combining(c) for c in parts[1:]):
            src.append(chr(cp))
            dst.append(parts[0].lower())
    return "".join(src), "".join(dst)


def _words_function(fold: bool, compose: bool) -> None:
    """``recsys_search_words``: 0010's (``fold`` False) or this revision's, composing first where ``compose``.
    ASCII text skips it all (most of a catalogue). Characters of ``translate``'s from without a to are deleted
    (the soft hyphen, the word joiner). (``\\:``: a colon, not a bound parameter, to SQLAlchemy's text().)"""
    src, dst = _diacritics()
    folded = "words"
    if fold:
        src, dst = src + "".join(LETTERS) + DROPPED, dst + "".join(LETTERS.values())
        folded = "normalize(words, NFC)" if compose else folded
        for a, b in MULTI.items():
            folded = f"replace({folded}, '{a}', '{b}')"
    op.execute(f"""
        CREATE OR REPLACE FUNCTION recsys_search_words(words text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
            SELECT regexp_replace(CASE WHEN octet_length(words) = char_length(words) THEN words
                                       ELSE translate({folded}, '{src}', '{dst}') END, '[[\\:punct\\:]]+', ' ', 'g')
        $$""")


def _pg_document(row: str) -> str:
    """0010's document: title (A), category (B), attribute values (C), description and generated description (D)."""
    attrs = (f"CASE WHEN json_typeof({row}.attributes) = 'object' THEN (SELECT string_agg(value, ' ') "
             f"FROM json_each_text({row}.attributes)) END")
    generated = f"(SELECT d.text FROM item_descriptions d WHERE d.item_id = {row}.id)"
    parts = ((f"{row}.title", "A", LIMITS["title"]), (f"{row}.category", "B", LIMITS["category"]),
             (attrs, "C", LIMITS["attrs"]), (f"{row}.description", "D", LIMITS["description"]),
             (generated, "D", LIMITS["generated"]))
    return " || ".join(f"setweight(to_tsvector('english', recsys_search_words(left(coalesce({expr}, ''), {n}))), "
                       f"'{weight}')" for expr, weight, n in parts)


def _pg_rebuild() -> None:
    """Rewrites the documents the function now makes differently (ASCII ones stay: no dead rows, no GIN work)."""
    op.execute(f"UPDATE item_search s SET document = n.document FROM (SELECT items.id, {_pg_document('items')} "
               "AS document FROM items JOIN item_search ON item_search.item_id = items.id) n "
               "WHERE n.id = s.item_id AND s.document IS DISTINCT FROM n.document")


def _pg_can_compose() -> bool:
    """``normalize`` exists from PostgreSQL 13 and works on UTF8 databases only."""
    row = op.get_bind().exec_driver_sql("SELECT current_setting('server_version_num')::int >= 130000 "
                                        "AND current_setting('server_encoding') = 'UTF8'").scalar()
    return bool(row)


# -- SQLite ---------------------------------------------------------------------------------------------------------
TEXT_COLUMNS = "title, description, category, attributes, hidden, deleted"
LIVE = "NOT ({row}.hidden IS 1 OR {row}.deleted IS 1)"
COLUMNS = "title, description, category, attrs, generated"
INSERT = f"INSERT INTO items_fts (rowid, {COLUMNS})"


def _sqlite_fold(expr: str) -> str:
    """``expr`` folded (once evaluated: a derived table names it); ASCII text as it is."""
    out = "v"
    for a, b in {**MULTI, **LETTERS}.items():
        out = f"replace({out}, '{a}', '{b}')"
    for c in DROPPED:
        out = f"replace({out}, char({ord(c)}), '')"
    return f"(SELECT CASE WHEN length(v) = length(CAST(v AS BLOB)) THEN v ELSE {out} END FROM (SELECT {expr} AS v))"


def _sqlite_values(row: str, fold: bool) -> str:
    """The FTS row of ``row`` (NEW or items): 0006's columns, folded where ``fold``."""
    attrs = (f"CASE WHEN json_valid({row}.attributes) THEN (SELECT group_concat(value, ' ') "
             f"FROM json_each({row}.attributes)) END")
    generated = f"(SELECT d.text FROM item_descriptions d WHERE d.item_id = {row}.id)"
    parts = [f"{row}.title", f"{row}.description", f"{row}.category", attrs, generated]
    return ", ".join([f"{row}.id", *(_sqlite_fold(p) if fold else p for p in parts)])


def _sqlite_refresh(item_id: str, fold: bool) -> str:
    """Statements that rewrite the FTS row of item ``item_id`` (an expression such as NEW.item_id), as 0006's."""
    return (f"DELETE FROM items_fts WHERE rowid = {item_id}; "
            f"{INSERT} SELECT {_sqlite_values('items', fold)} FROM items "
            f"WHERE items.id = {item_id} AND {LIVE.format(row='items')};")


def _sqlite_index(fold: bool) -> None:
    """0006's ``items_fts`` and its triggers on ``items`` and ``item_descriptions``, rebuilt from the live items
    (dropping the table is FTS5's quickest way to empty it)."""
    for name in ("items_fts_ins", "items_fts_upd", "items_fts_del", "item_descriptions_fts_ins",
                 "item_descriptions_fts_upd", "item_descriptions_fts_del"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS items_fts")
    op.execute(f"CREATE VIRTUAL TABLE items_fts USING fts5({COLUMNS}, "
               "tokenize='porter unicode61 remove_diacritics 2')")
    op.execute(f"{INSERT} SELECT {_sqlite_values('items', fold)} FROM items WHERE {LIVE.format(row='items')}")
    op.execute(f"CREATE TRIGGER items_fts_ins AFTER INSERT ON items BEGIN "
               f"DELETE FROM items_fts WHERE rowid = NEW.id; "
               f"{INSERT} SELECT {_sqlite_values('NEW', fold)} WHERE {LIVE.format(row='NEW')}; END")
    op.execute(f"CREATE TRIGGER items_fts_upd AFTER UPDATE OF id, {TEXT_COLUMNS} ON items BEGIN "
               f"DELETE FROM items_fts WHERE rowid = OLD.id OR rowid = NEW.id; "
               f"{INSERT} SELECT {_sqlite_values('NEW', fold)} WHERE {LIVE.format(row='NEW')}; END")
    op.execute("CREATE TRIGGER items_fts_del AFTER DELETE ON items BEGIN "
               "DELETE FROM items_fts WHERE rowid = OLD.id; END")
    op.execute(f"CREATE TRIGGER item_descriptions_fts_ins AFTER INSERT ON item_descriptions BEGIN "
               f"{_sqlite_refresh('NEW.item_id', fold)} END")
    op.execute(f"CREATE TRIGGER item_descriptions_fts_upd AFTER UPDATE ON item_descriptions BEGIN "
               f"{_sqlite_refresh('OLD.item_id', fold)} {_sqlite_refresh('NEW.item_id', fold)} END")
    op.execute(f"CREATE TRIGGER item_descriptions_fts_del AFTER DELETE ON item_descriptions BEGIN "
               f"{_sqlite_refresh('OLD.item_id', fold)} END")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_index(fold=True)
    elif dialect == "postgresql":
        _words_function(fold=True, compose=_pg_can_compose())
        _pg_rebuild()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_index(fold=False)
    elif dialect == "postgresql":
        _words_function(fold=False, compose=False)
        _pg_rebuild()
