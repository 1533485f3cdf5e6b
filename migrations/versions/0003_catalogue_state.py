"""catalogue_state.removed_version, kept by triggers

Every recommendation request needs to know whether the removed (hidden or deleted) items changed. Reading their ids
each time grows with the catalogue's history (20,000 deleted items made a cached answer 33x slower); this one row's
counter goes up in the same transaction as any change to which items are removed, whoever makes it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BUMP = "UPDATE catalogue_state SET removed_version = removed_version + 1 WHERE id = 1"
# (event, condition on the row): an item stops or starts being removed, a removed item arrives or goes
CASES = {
    "upd": ("UPDATE OF hidden, deleted", "(OLD.hidden OR OLD.deleted) IS NOT (NEW.hidden OR NEW.deleted)"),
    "ins": ("INSERT", "NEW.hidden OR NEW.deleted"),
    "del": ("DELETE", "OLD.hidden OR OLD.deleted"),
}


def upgrade() -> None:
    op.create_table(
        "catalogue_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("removed_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_state")),
    )
    dialect = op.get_bind().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        return  # no row: the service then reads the removed items on every request, as before
    op.execute("INSERT INTO catalogue_state (id, removed_version) VALUES (1, 0)")
    if dialect == "sqlite":
        for name, (event, when) in CASES.items():
            op.execute(f"CREATE TRIGGER items_removed_{name} AFTER {event} ON items WHEN {when} "
                       f"BEGIN {BUMP}; END")
    else:
        op.execute(f"CREATE FUNCTION recsys_bump_removed_version() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        for name, (event, when) in CASES.items():
            op.execute(f"CREATE TRIGGER items_removed_{name} AFTER {event} ON items FOR EACH ROW "
                       f"WHEN ({when.replace(' IS NOT ', ' IS DISTINCT FROM ')}) "
                       "EXECUTE FUNCTION recsys_bump_removed_version()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        for name in CASES:
            op.execute(f"DROP TRIGGER IF EXISTS items_removed_{name}" + (" ON items" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS recsys_bump_removed_version()")
    op.drop_table("catalogue_state")
