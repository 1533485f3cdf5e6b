"""partial index over removed (hidden or deleted) items

Every recommendation request reads the removed items' ids; without this index that read scans the whole catalogue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 12:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# Copies of recsys.store.tables.REMOVED_*: a migration keeps the text it was written with.
REMOVED_SQLITE = "hidden IS 1 OR deleted IS 1"
REMOVED_POSTGRESQL = "hidden IS true OR deleted IS true"


def upgrade() -> None:
    op.create_index("ix_items_removed", "items", ["external_id"], sqlite_where=sa.text(REMOVED_SQLITE),
                    postgresql_where=sa.text(REMOVED_POSTGRESQL))


def downgrade() -> None:
    op.drop_index("ix_items_removed", table_name="items")
