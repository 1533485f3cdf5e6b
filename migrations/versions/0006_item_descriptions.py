"""item_descriptions: generated descriptions, kept apart from the merchant's text and covered by the lexical index

``recsys items describe`` writes one description per item, composed from its image's zero-shot facets. The lexical
index of migration 0004 now covers it too: SQLite's ``items_fts`` gains a ``generated`` column (the table is rebuilt:
FTS5 cannot add columns) and PostgreSQL's ``item_search`` document gains the text at weight D. Triggers on both
``items`` and ``item_descriptions`` keep the index exact in the writer's own transaction; deleting an item cascades
to its description, whose trigger then finds no live item and leaves no row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TEXT_COLUMNS = "title, description, category, attributes, hidden, deleted"

# -- SQLite ---------------------------------------------------------------------------------------------------------
SQLITE_LIVE = "NOT ({row}.hidden IS 1 OR {row}.deleted IS 1)"


def _sqlite_values(row: str, generated: bool) -> str:
    """The FTS columns of ``row`` (NEW or items), with the item's generated description when ``generated``."""
    attrs = (f"CASE WHEN json_valid({row}.attributes) THEN (SELECT group_concat(value, ' ') "
             f"FROM json_each({row}.attributes)) END")
    values = f"{row}.id, {row}.title, {row}.description, {row}.category, {attrs}"
    if generated:
        values += f", (SELECT d.text FROM item_descriptions d WHERE d.item_id = {row}.id)"
    return values


def _sqlite_index(generated: bool) -> None:
    """(Re)create ``items_fts`` with its triggers on ``items`` and fill it from the live items."""
    for name in ("ins", "upd", "del"):
        op.execute(f"DROP TRIGGER IF EXISTS items_fts_{name}")
    op.execute("DROP TABLE IF EXISTS items_fts")
    columns = "title, description, category, attrs" + (", generated" if generated else "")
    insert = f"INSERT INTO items_fts (rowid, {columns})"
    op.execute(f"CREATE VIRTUAL TABLE items_fts USING fts5({columns}, "
               "tokenize='porter unicode61 remove_diacritics 2')")
    op.execute(f"{insert} SELECT {_sqlite_values('items', generated)} FROM items "
               f"WHERE {SQLITE_LIVE.format(row='items')}")
    op.execute(f"CREATE TRIGGER items_fts_ins AFTER INSERT ON items BEGIN "
               f"DELETE FROM items_fts WHERE rowid = NEW.id; "
               f"{insert} SELECT {_sqlite_values('NEW', generated)} WHERE {SQLITE_LIVE.format(row='NEW')}; END")
    op.execute(f"CREATE TRIGGER items_fts_upd AFTER UPDATE OF id, {TEXT_COLUMNS} ON items BEGIN "
               f"DELETE FROM items_fts WHERE rowid = OLD.id OR rowid = NEW.id; "
               f"{insert} SELECT {_sqlite_values('NEW', generated)} WHERE {SQLITE_LIVE.format(row='NEW')}; END")
    op.execute("CREATE TRIGGER items_fts_del AFTER DELETE ON items BEGIN "
               "DELETE FROM items_fts WHERE rowid = OLD.id; END")


def _sqlite_refresh(item_id: str) -> str:
    """Statements that rewrite the FTS row of item ``item_id`` (an expression such as NEW.item_id)."""
    insert = "INSERT INTO items_fts (rowid, title, description, category, attrs, generated)"
    return (f"DELETE FROM items_fts WHERE rowid = {item_id}; "
            f"{insert} SELECT {_sqlite_values('items', True)} FROM items "
            f"WHERE items.id = {item_id} AND {SQLITE_LIVE.format(row='items')};")


def _upgrade_sqlite() -> None:
    _sqlite_index(generated=True)
    op.execute(f"CREATE TRIGGER item_descriptions_fts_ins AFTER INSERT ON item_descriptions BEGIN "
               f"{_sqlite_refresh('NEW.item_id')} END")
    op.execute(f"CREATE TRIGGER item_descriptions_fts_upd AFTER UPDATE ON item_descriptions BEGIN "
               f"{_sqlite_refresh('OLD.item_id')} {_sqlite_refresh('NEW.item_id')} END")
    op.execute(f"CREATE TRIGGER item_descriptions_fts_del AFTER DELETE ON item_descriptions BEGIN "
               f"{_sqlite_refresh('OLD.item_id')} END")


def _downgrade_sqlite() -> None:
    for name in ("ins", "upd", "del"):
        op.execute(f"DROP TRIGGER IF EXISTS item_descriptions_fts_{name}")
    _sqlite_index(generated=False)


# -- PostgreSQL -----------------------------------------------------------------------------------------------------
def _pg_document(row: str, generated: bool) -> str:
    """Title weighs most (A), then category (B), attribute values (C), description and generated description (D)."""
    attrs = (f"CASE WHEN json_typeof({row}.attributes) = 'object' THEN (SELECT string_agg(value, ' ') "
             f"FROM json_each_text({row}.attributes)) END")
    doc = (f"setweight(to_tsvector('english', coalesce({row}.title, '')), 'A') || "
           f"setweight(to_tsvector('english', coalesce({row}.category, '')), 'B') || "
           f"setweight(to_tsvector('english', coalesce({attrs}, '')), 'C') || "
           f"setweight(to_tsvector('english', coalesce({row}.description, '')), 'D')")
    if generated:
        doc += (f" || setweight(to_tsvector('english', coalesce((SELECT d.text FROM item_descriptions d "
                f"WHERE d.item_id = {row}.id), '')), 'D')")
    return doc


def _pg_item_function(generated: bool) -> None:
    """The trigger function on ``items`` of migration 0004, with or without the generated description."""
    op.execute(f"""
        CREATE OR REPLACE FUNCTION recsys_item_search() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id THEN
                DELETE FROM item_search WHERE item_id = OLD.id;
            END IF;
            IF NEW.hidden IS TRUE OR NEW.deleted IS TRUE THEN
                DELETE FROM item_search WHERE item_id = NEW.id;
            ELSE
                INSERT INTO item_search (item_id, document) VALUES (NEW.id, {_pg_document('NEW', generated)})
                ON CONFLICT (item_id) DO UPDATE SET document = EXCLUDED.document;
            END IF;
            RETURN NULL;
        END $$""")


def _upgrade_postgresql() -> None:
    _pg_item_function(generated=True)
    op.execute(f"""
        CREATE FUNCTION recsys_item_search_refresh(target integer) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO item_search (item_id, document)
            SELECT items.id, {_pg_document('items', True)} FROM items
            WHERE items.id = target AND NOT (items.hidden IS TRUE OR items.deleted IS TRUE)
            ON CONFLICT (item_id) DO UPDATE SET document = EXCLUDED.document;
        END $$""")
    op.execute("""
        CREATE FUNCTION recsys_item_description_search() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                PERFORM recsys_item_search_refresh(OLD.item_id);
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                PERFORM recsys_item_search_refresh(NEW.item_id);
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER item_descriptions_search AFTER INSERT OR UPDATE OR DELETE ON item_descriptions "
               "FOR EACH ROW EXECUTE FUNCTION recsys_item_description_search()")


def _downgrade_postgresql() -> None:
    op.execute("DROP TRIGGER IF EXISTS item_descriptions_search ON item_descriptions")
    op.execute("DROP FUNCTION IF EXISTS recsys_item_description_search()")
    op.execute("DROP FUNCTION IF EXISTS recsys_item_search_refresh(integer)")
    _pg_item_function(generated=False)
    # Documents that held generated words are rewritten without them.
    op.execute(f"UPDATE item_search s SET document = {_pg_document('items', False)} FROM items "
               "WHERE items.id = s.item_id AND s.item_id IN (SELECT item_id FROM item_descriptions)")


def upgrade() -> None:
    op.create_table(
        "item_descriptions",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("facets", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("vocabulary", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_item_descriptions_item_id_items",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id", name="pk_item_descriptions"),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _downgrade_sqlite()
    elif dialect == "postgresql":
        _downgrade_postgresql()
    op.drop_table("item_descriptions")
