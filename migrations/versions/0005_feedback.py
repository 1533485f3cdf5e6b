"""feedback loop: served lists, and events that name the list they answer

``served_lists`` records every list the API answered (its recommendation id, source, user, items in order and the
generations that made it); events gain ``recommendation_id`` and ``position`` for attribution. The ``impression``
event type needs no schema change (``events.type`` is a free string checked by the application).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 13:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served_lists",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("feed_id", sa.String(64), nullable=True),
        sa.Column("offset", sa.Integer(), nullable=False),
        sa.Column("item_ids", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("index_generation", sa.String(200), nullable=True),
        sa.Column("ranker_version", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_served_lists"),
    )
    op.create_index("ix_served_lists_source", "served_lists", ["source"])
    op.create_index("ix_served_lists_feed_id", "served_lists", ["feed_id"])
    op.create_index("ix_served_lists_created_at", "served_lists", ["created_at"])
    op.create_index("ix_served_lists_user_created", "served_lists", ["user_id", "created_at"])
    op.add_column("events", sa.Column("recommendation_id", sa.String(64), nullable=True))
    op.add_column("events", sa.Column("position", sa.Integer(), nullable=True))
    op.create_index("ix_events_recommendation_id", "events", ["recommendation_id"])


def downgrade() -> None:
    op.drop_index("ix_events_recommendation_id", table_name="events")
    with op.batch_alter_table("events") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("position")
        batch.drop_column("recommendation_id")
    op.drop_table("served_lists")
