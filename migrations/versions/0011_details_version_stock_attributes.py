"""catalogue_state.details_version also moves with an item's stock and attributes

A served generation filters on its build's metadata patched with the items changed since
(``recsys.serving.live_meta``), read again when this counter moves. 0009 moves it for title, category, price and
images (what a result shows); a stock or attribute feed (``recsys import items``) changed what filters select without
moving it, so ``in_stock`` and attribute filters kept the build's values. The triggers here bump it for those too,
whoever writes (the application or plain SQL), in the same way as 0009.

PostgreSQL: ``attributes`` is ``json``, which has no equality: the texts are compared (a rewrite with other spacing
or key order counts as a change, which costs one re-read). Deferred to commit and bumped once per transaction by
0009's ``recsys_bump_details_version()``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BUMP = "UPDATE catalogue_state SET details_version = details_version + 1 WHERE id = 1"
NAME = "items_filters_upd"
CHANGED = {
    "sqlite": "OLD.in_stock IS NOT NEW.in_stock OR OLD.attributes IS NOT NEW.attributes",
    "postgresql": "OLD.in_stock IS DISTINCT FROM NEW.in_stock OR OLD.attributes::text IS DISTINCT FROM "
                  "NEW.attributes::text",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # one writer at a time: a per-row bump costs little and cannot deadlock
        op.execute(f"CREATE TRIGGER {NAME} AFTER UPDATE OF in_stock, attributes ON items "
                   f"WHEN {CHANGED[dialect]} BEGIN {BUMP}; END")
    elif dialect == "postgresql":
        op.execute(f"CREATE CONSTRAINT TRIGGER {NAME} AFTER UPDATE OF in_stock, attributes ON items "
                   f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({CHANGED[dialect]}) "
                   "EXECUTE FUNCTION recsys_bump_details_version()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {NAME}")
    elif dialect == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {NAME} ON items")
