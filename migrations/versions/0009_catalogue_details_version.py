"""catalogue_state.details_version, kept by triggers

A cached recommendation list carries what a client shows of each item (title, category, price, whether it has an
image: ``recsys.store.summaries``). Its key held the user's events, the removed items and the generations, so a
price feed or an upsert that changed a title on a running server (no new generation) left cached lists answering the
old title and price until the hour rolled over, or, with the ``data`` clock, until the user's next event. This
counter goes up with every transaction that changes those details, through the application or plain SQL, and is part
of the key (read in the same statement as the removed-items version, migration 0003).

PostgreSQL: deferred to commit and bumped once per transaction, as in 0003.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

BUMP = "UPDATE catalogue_state SET details_version = details_version + 1 WHERE id = 1"
DIFFERS = {"sqlite": "IS NOT", "postgresql": "IS DISTINCT FROM"}


def _cases(dialect: str) -> dict[str, tuple[str, str, str]]:
    """name: (table, event, condition on the row): a shown field of an item changes; an image arrives, goes or
    starts or stops failing to decode (the summary's ``image_url``)."""
    ne = DIFFERS[dialect]
    shown = " OR ".join(f"OLD.{c} {ne} NEW.{c}" for c in ("title", "category", "price"))
    return {
        "items_details_upd": ("items", "UPDATE OF title, category, price", shown),
        "media_details_ins": ("item_media", "INSERT", "NEW.kind = 'image'"),
        "media_details_del": ("item_media", "DELETE", "OLD.kind = 'image'"),
        "media_details_upd": ("item_media", "UPDATE OF kind, status",
                              f"OLD.kind {ne} NEW.kind OR OLD.status {ne} NEW.status"),
    }


def upgrade() -> None:
    op.add_column("catalogue_state", sa.Column("details_version", sa.BigInteger(), server_default="0",
                                               nullable=False))
    dialect = op.get_bind().dialect.name
    if dialect not in DIFFERS:
        return
    if dialect == "sqlite":  # one writer at a time: a per-row bump costs little and cannot deadlock
        for name, (table, event, when) in _cases(dialect).items():
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} WHEN {when} BEGIN {BUMP}; END")
        return
    op.execute(f"""
        CREATE FUNCTION recsys_bump_details_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('recsys.details_bumped_in', true) IS DISTINCT FROM txid_current()::text THEN
                {BUMP};
                PERFORM set_config('recsys.details_bumped_in', txid_current()::text, true);
            END IF;
            RETURN NULL;
        END $$""")
    for name, (table, event, when) in _cases(dialect).items():
        op.execute(f"CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON {table} "
                   f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({when}) "
                   "EXECUTE FUNCTION recsys_bump_details_version()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in DIFFERS:
        for name, (table, _, _) in _cases(dialect).items():
            op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS recsys_bump_details_version()")
    # in place (SQLite 3.35+): a batch copy would rename the table under 0003's triggers, which name it
    op.execute("ALTER TABLE catalogue_state DROP COLUMN details_version")
