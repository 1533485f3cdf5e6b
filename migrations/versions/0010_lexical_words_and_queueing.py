"""Lexical index: the same words on both databases, bounded PostgreSQL documents, writers that queue

PostgreSQL (the documents of 0004/0006 are rebuilt):

- Words. The query is split into runs of letters and digits (``recsys.store.lexical.query_terms``) and SQLite's FTS5
  splits the text the same way, folding diacritics. PostgreSQL's parser kept ``P-0777`` as ``p`` + ``-0777``, and
  ``1.5``, ``www.acme.com`` and ``manual_v2.pdf`` as single tokens, and kept accents, so a code, a decimal, a host,
  a file name or ``cafe`` for "Café" found nothing. Function ``recsys_search_words`` now folds Latin letters with
  diacritics to their base letter (as SQLite does; ``ß``, ``æ``, ``ø`` stay) and turns punctuation into spaces; the
  documents and each query word both go through it.
- Size. A tsvector holds at most 1 MB, and an item within the API's limits (100,000-character title and
  description, 200 attributes of 10,000) overflowed it: the write failed. Each part is cut to its first characters
  (``LIMITS``; about 6 bytes of tsvector per character at worst), which keeps every document under the limit.
- Queueing. A description write took only a key-share lock on its item, so it did not queue behind a concurrent
  write of the item (nor the item write behind it): each built the document from the other's old state, and the
  last to commit left a stale document. The description's refresh now locks the item row first and builds the
  document in a later statement, whose snapshot sees what the other writer committed.

SQLite: ``items`` has no AUTOINCREMENT, so a new item may get the id of a deleted one. An item deleted by a client
with foreign keys off (the default of ``sqlite3``) left its generated description to that new item. A trigger now
deletes it whatever the pragma (its own trigger then drops the text from the index); orphans are removed here.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 14:30:00
"""

from __future__ import annotations

import unicodedata

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

LIMITS = {"title": 20_000, "category": 1_000, "attrs": 50_000, "description": 60_000, "generated": 20_000}
"""Characters of each part that PostgreSQL indexes: 151,000 in all, at most ~6 bytes of tsvector each (< 1 MB)."""


# -- PostgreSQL -----------------------------------------------------------------------------------------------------
def _fold() -> tuple[str, str]:
    """Latin letters with diacritics and their base letters (``translate``'s from and to), as SQLite's
    ``remove_diacritics 2`` folds them. Canonical decompositions never change (Unicode's stability policy)."""
    src, dst = ["ſ", "ẛ"], ["s", "s"]
    for cp in (*range(0xC0, 0x250), *range(0x1E00, 0x1F00)):
        parts = unicodedata.normalize("NFD", chr(cp))
        if len(parts) > 1 and parts[0].isascii() and all(unicodedata.combining(c) for c in parts[1:]):
            src.append(chr(cp))
            dst.append(parts[0].lower())
    return "".join(src), "".join(dst)


def _create_words_function() -> None:
    src, dst = _fold()
    # The fold is skipped for ASCII text (most of a catalogue): translate compares each character with every one of
    # ``src``. Punctuation becomes spaces, as the query's split by letters and digits treats it. (``\\:``: a colon,
    # not a bound parameter, to SQLAlchemy's text().)
    op.execute(f"""
        CREATE FUNCTION recsys_search_words(words text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
            SELECT regexp_replace(CASE WHEN octet_length(words) = char_length(words) THEN words
                                       ELSE translate(words, '{src}', '{dst}') END, '[[\\:punct\\:]]+', ' ', 'g')
        $$""")


def _attrs(row: str) -> str:
    return (f"CASE WHEN json_typeof({row}.attributes) = 'object' THEN (SELECT string_agg(value, ' ') "
            f"FROM json_each_text({row}.attributes)) END")


def _generated(row: str) -> str:
    return f"(SELECT d.text FROM item_descriptions d WHERE d.item_id = {row}.id)"


def _pg_document(row: str) -> str:
    """Title weighs most (A), then category (B), attribute values (C), description and generated description (D)."""
    parts = ((f"{row}.title", "A", LIMITS["title"]), (f"{row}.category", "B", LIMITS["category"]),
             (_attrs(row), "C", LIMITS["attrs"]), (f"{row}.description", "D", LIMITS["description"]),
             (_generated(row), "D", LIMITS["generated"]))
    return " || ".join(f"setweight(to_tsvector('english', recsys_search_words(left(coalesce({expr}, ''), {n}))), "
                       f"'{weight}')" for expr, weight, n in parts)


def _pg_document_0006(row: str) -> str:
    """The document of migration 0006 (for the downgrade)."""
    return (f"setweight(to_tsvector('english', coalesce({row}.title, '')), 'A') || "
            f"setweight(to_tsvector('english', coalesce({row}.category, '')), 'B') || "
            f"setweight(to_tsvector('english', coalesce({_attrs(row)}, '')), 'C') || "
            f"setweight(to_tsvector('english', coalesce({row}.description, '')), 'D') || "
            f"setweight(to_tsvector('english', coalesce({_generated(row)}, '')), 'D')")


def _pg_functions(document: str, document_new: str, lock: str) -> None:
    """The trigger function on ``items`` (0004) and the refresh the description trigger calls (0006)."""
    op.execute(f"""
        CREATE OR REPLACE FUNCTION recsys_item_search() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id THEN
                DELETE FROM item_search WHERE item_id = OLD.id;
            END IF;
            IF NEW.hidden IS TRUE OR NEW.deleted IS TRUE THEN
                DELETE FROM item_search WHERE item_id = NEW.id;
            ELSE
                INSERT INTO item_search (item_id, document) VALUES (NEW.id, {document_new})
                ON CONFLICT (item_id) DO UPDATE SET document = EXCLUDED.document;
            END IF;
            RETURN NULL;
        END $$""")
    op.execute(f"""
        CREATE OR REPLACE FUNCTION recsys_item_search_refresh(target integer) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            {lock}
            INSERT INTO item_search (item_id, document)
            SELECT items.id, {document} FROM items
            WHERE items.id = target AND NOT (items.hidden IS TRUE OR items.deleted IS TRUE)
            ON CONFLICT (item_id) DO UPDATE SET document = EXCLUDED.document;
        END $$""")


# Waits for a concurrent writer of the item (and makes the item's writers wait for this one): the INSERT below is a
# later statement, so under READ COMMITTED it reads what that writer committed.
LOCK_ITEM = "PERFORM 1 FROM items WHERE id = target FOR NO KEY UPDATE;"


def _rebuild(document: str) -> None:
    op.execute(f"UPDATE item_search s SET document = {document} FROM items WHERE items.id = s.item_id")


def _upgrade_postgresql() -> None:
    _create_words_function()
    _pg_functions(_pg_document("items"), _pg_document("NEW"), LOCK_ITEM)
    _rebuild(_pg_document("items"))


def _downgrade_postgresql() -> None:
    _pg_functions(_pg_document_0006("items"), _pg_document_0006("NEW"), "")
    _rebuild(_pg_document_0006("items"))
    op.execute("DROP FUNCTION IF EXISTS recsys_search_words(text)")


# -- SQLite ---------------------------------------------------------------------------------------------------------
def _upgrade_sqlite() -> None:
    op.execute("DELETE FROM item_descriptions WHERE item_id NOT IN (SELECT id FROM items)")
    op.execute("CREATE TRIGGER items_descriptions_del AFTER DELETE ON items BEGIN "
               "DELETE FROM item_descriptions WHERE item_id = OLD.id; END")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS items_descriptions_del")
    elif dialect == "postgresql":
        _downgrade_postgresql()
