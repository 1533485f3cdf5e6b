"""events: ids never reused on SQLite (AUTOINCREMENT), as PostgreSQL's sequence never reuses them

SQLite hands out the highest freed rowid again: a user deleted and then posting as many events got the same event
ids, so the result cache (keyed on the ids of a user's events) answered the list ranked from the deleted history,
and the events watermark (count and highest id) said nothing had changed, so ``recsys build`` kept a ranker trained
on them. The table is copied once with AUTOINCREMENT (SQLite cannot add it in place). PostgreSQL: nothing to do.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 02:40:00
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("events", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade() -> None:
    _recreate(True)


def downgrade() -> None:
    _recreate(False)
