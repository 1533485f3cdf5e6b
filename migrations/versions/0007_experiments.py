"""experiments: the experiment and variant a served list was answered under

``recsys experiments report`` groups served lists, and the events attributed to them, by variant. Lists served
outside an experiment keep both columns NULL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("served_lists", sa.Column("experiment", sa.String(64), nullable=True))
    op.add_column("served_lists", sa.Column("variant", sa.String(64), nullable=True))
    op.create_index("ix_served_lists_experiment", "served_lists", ["experiment"])


def downgrade() -> None:
    op.drop_index("ix_served_lists_experiment", table_name="served_lists")
    with op.batch_alter_table("served_lists") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("variant")
        batch.drop_column("experiment")
