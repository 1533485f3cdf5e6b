"""catalogue_state.removed_version, kept by triggers

Every recommendation request needs to know whether the removed (hidden or deleted) items changed. Reading their ids
each time grows with the catalogue's history (20,000 deleted items made a cached answer 33x slower); this one row's
counter goes up with every transaction that changes which ids are removed, through the application or plain SQL
(not through SQLite's INSERT OR REPLACE, which fires no delete trigger).

PostgreSQL: the triggers are deferred to commit and bump once per transaction, so writers hold the row's lock only
while committing (taken mid-transaction it deadlocked a hide against an import touching the same items).

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
TRUE = {"sqlite": "IS 1", "postgresql": "IS TRUE"}  # the query's own predicate: Item.hidden.is_(True) | ...
DIFFERS = {"sqlite": "IS NOT", "postgresql": "IS DISTINCT FROM"}


def _cases(dialect: str) -> dict[str, tuple[str, str]]:
    """(event, condition on the row): an item starts or stops being removed, a removed item changes its id,
    arrives or goes."""
    t, ne = TRUE[dialect], DIFFERS[dialect]
    old = f"(OLD.hidden {t} OR OLD.deleted {t})"
    new = f"(NEW.hidden {t} OR NEW.deleted {t})"
    return {
        "upd": ("UPDATE OF hidden, deleted, external_id",
                f"{old} {ne} {new} OR ({new} AND OLD.external_id {ne} NEW.external_id)"),
        "ins": ("INSERT", new),
        "del": ("DELETE", old),
    }


def upgrade() -> None:
    op.create_table(
        "catalogue_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("removed_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_state")),
    )
    dialect = op.get_bind().dialect.name
    if dialect not in TRUE:
        return  # no row: the service then reads the removed items on every request, as before
    op.execute("INSERT INTO catalogue_state (id, removed_version) VALUES (1, 0)")
    if dialect == "sqlite":  # one writer at a time: a per-row bump costs little and cannot deadlock
        for name, (event, when) in _cases(dialect).items():
            op.execute(f"CREATE TRIGGER items_removed_{name} AFTER {event} ON items WHEN {when} "
                       f"BEGIN {BUMP}; END")
        return
    op.execute(f"""
        CREATE FUNCTION recsys_bump_removed_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('recsys.removed_bumped_in', true) IS DISTINCT FROM txid_current()::text THEN
                {BUMP};
                PERFORM set_config('recsys.removed_bumped_in', txid_current()::text, true);
            END IF;
            RETURN NULL;
        END $$""")
    for name, (event, when) in _cases(dialect).items():
        op.execute(f"CREATE CONSTRAINT TRIGGER items_removed_{name} AFTER {event} ON items "
                   f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({when}) "
                   "EXECUTE FUNCTION recsys_bump_removed_version()")
    op.execute("CREATE TRIGGER items_removed_truncate AFTER TRUNCATE ON items "
               "FOR EACH STATEMENT EXECUTE FUNCTION recsys_bump_removed_version()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in TRUE:
        on = " ON items" if dialect == "postgresql" else ""
        for name in [*_cases(dialect), *(["truncate"] if dialect == "postgresql" else [])]:
            op.execute(f"DROP TRIGGER IF EXISTS items_removed_{name}{on}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS recsys_bump_removed_version()")
    op.drop_table("catalogue_state")
