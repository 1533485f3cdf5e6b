"""Lexical (full-text) index over the live items' text, kept by triggers

The words of an item (title, description, category and the values of its attributes) are indexed for keyword search
(``recsys.store.lexical``): SQLite FTS5 table ``items_fts`` (rowid = items.id, porter stemming, diacritics folded) and,
on PostgreSQL, table ``item_search`` (a weighted ``english`` tsvector per item, GIN-indexed). Only live items (neither
hidden nor deleted) have a row. Triggers on ``items`` keep it exact in the writer's own transaction, whoever writes:
the importers, the API, or plain SQL. Existing items are backfilled here.

SQLite: an INSERT OR REPLACE fires no delete trigger; the insert trigger clears the row's id first, and a stale row left
under a replaced id matches no item (queries join ``items`` and check it is live).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 13:40:00
"""

from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TEXT_COLUMNS = "title, description, category, attributes, hidden, deleted"

# -- SQLite ---------------------------------------------------------------------------------------------------------
SQLITE_LIVE = "NOT (NEW.hidden IS 1 OR NEW.deleted IS 1)"


def _sqlite_values(row: str) -> str:
    """The FTS columns of ``row`` (NEW or items): attribute values joined by spaces (arrays and objects as JSON)."""
    attrs = (f"CASE WHEN json_valid({row}.attributes) THEN (SELECT group_concat(value, ' ') "
             f"FROM json_each({row}.attributes)) END")
    return f"{row}.id, {row}.title, {row}.description, {row}.category, {attrs}"


SQLITE_INSERT = "INSERT INTO items_fts (rowid, title, description, category, attrs)"


def _upgrade_sqlite() -> None:
    op.execute("CREATE VIRTUAL TABLE items_fts USING fts5(title, description, category, attrs, "
               "tokenize='porter unicode61 remove_diacritics 2')")
    op.execute(f"{SQLITE_INSERT} SELECT {_sqlite_values('items')} FROM items "
               "WHERE NOT (items.hidden IS 1 OR items.deleted IS 1)")
    op.execute(f"CREATE TRIGGER items_fts_ins AFTER INSERT ON items BEGIN "
               f"DELETE FROM items_fts WHERE rowid = NEW.id; "
               f"{SQLITE_INSERT} SELECT {_sqlite_values('NEW')} WHERE {SQLITE_LIVE}; END")
    op.execute(f"CREATE TRIGGER items_fts_upd AFTER UPDATE OF id, {TEXT_COLUMNS} ON items BEGIN "
               f"DELETE FROM items_fts WHERE rowid = OLD.id OR rowid = NEW.id; "
               f"{SQLITE_INSERT} SELECT {_sqlite_values('NEW')} WHERE {SQLITE_LIVE}; END")
    op.execute("CREATE TRIGGER items_fts_del AFTER DELETE ON items BEGIN "
               "DELETE FROM items_fts WHERE rowid = OLD.id; END")


# -- PostgreSQL -----------------------------------------------------------------------------------------------------
def _pg_document(row: str) -> str:
    """Title weighs most (A), then category (B), attribute values (C), description (D): ts_rank's weights."""
    attrs = (f"CASE WHEN json_typeof({row}.attributes) = 'object' THEN (SELECT string_agg(value, ' ') "
             f"FROM json_each_text({row}.attributes)) END")
    return (f"setweight(to_tsvector('english', coalesce({row}.title, '')), 'A') || "
            f"setweight(to_tsvector('english', coalesce({row}.category, '')), 'B') || "
            f"setweight(to_tsvector('english', coalesce({attrs}, '')), 'C') || "
            f"setweight(to_tsvector('english', coalesce({row}.description, '')), 'D')")


def _upgrade_postgresql() -> None:
    op.execute("CREATE TABLE item_search (item_id INTEGER NOT NULL, document TSVECTOR NOT NULL, "
               "CONSTRAINT pk_item_search PRIMARY KEY (item_id), "
               "CONSTRAINT fk_item_search_item_id_items FOREIGN KEY (item_id) REFERENCES items (id) "
               "ON DELETE CASCADE)")
    op.execute("CREATE INDEX ix_item_search_document ON item_search USING GIN (document)")
    op.execute(f"INSERT INTO item_search (item_id, document) SELECT items.id, {_pg_document('items')} FROM items "
               "WHERE NOT (items.hidden IS TRUE OR items.deleted IS TRUE)")
    op.execute(f"""
        CREATE FUNCTION recsys_item_search() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id THEN
                DELETE FROM item_search WHERE item_id = OLD.id;
            END IF;
            IF NEW.hidden IS TRUE OR NEW.deleted IS TRUE THEN
                DELETE FROM item_search WHERE item_id = NEW.id;
            ELSE
                INSERT INTO item_search (item_id, document) VALUES (NEW.id, {_pg_document('NEW')})
                ON CONFLICT (item_id) DO UPDATE SET document = EXCLUDED.document;
            END IF;
            RETURN NULL;
        END $$""")
    # Deletes need no trigger: the foreign key cascades.
    op.execute(f"CREATE TRIGGER items_search_upsert AFTER INSERT OR UPDATE OF id, {TEXT_COLUMNS} ON items "
               "FOR EACH ROW EXECUTE FUNCTION recsys_item_search()")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()
    # other databases: no lexical index; search falls back to vectors alone (recsys.store.lexical.available)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("ins", "upd", "del"):
            op.execute(f"DROP TRIGGER IF EXISTS items_fts_{name}")
        op.execute("DROP TABLE IF EXISTS items_fts")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS items_search_upsert ON items")
        op.execute("DROP FUNCTION IF EXISTS recsys_item_search()")
        op.execute("DROP TABLE IF EXISTS item_search")
