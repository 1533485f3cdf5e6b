"""events: ids never reused on SQLite (AUTOINCREMENT), as PostgreSQL's sequence never reuses them

SQLite hands out the highest freed rowid again: a user deleted and then posting as many events got the same event
ids, so the result cache (keyed on the ids of a user's events) answered the list ranked from the deleted history,
and the events watermark (count and highest id) said nothing had changed, so ``recsys build`` kept a ranker trained
on them. The table is copied once with AUTOINCREMENT (SQLite cannot add it in place). PostgreSQL: nothing to do.

The copy runs with foreign keys on, so an event whose user or item was deleted by a client with them off (the
sqlite3 shell, Python's sqlite3 module) fails it. Such events are counted first and the migration stops, naming them
and the SQL that removes them, rather than drop stored rows silently or fail with the copy's IntegrityError.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 02:40:00
"""

from __future__ import annotations

from alembic import op
from alembic.util import CommandError
from sqlalchemy import text

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


ORPHANS = "user_id NOT IN (SELECT id FROM users) OR item_id NOT IN (SELECT id FROM items)"


def _refuse_orphans(direction: str) -> None:
    """Stop before the copy if events reference deleted users or items (CommandError: alembic's own refusal, which
    recsys's Store reports in one line); the transaction rolls back, the database stays as it was."""
    bind = op.get_bind()
    n = bind.execute(text(f"SELECT count(*) FROM events WHERE {ORPHANS}")).scalar_one()
    if not n:
        return
    path = bind.engine.url.database or "DATABASE_FILE"
    events = "1 event references" if n == 1 else f"{n} events reference"
    raise CommandError(
        f"migration 0008 stopped before copying the events table: {events} "
        "a user or an item that no longer exists (deleted by a client with foreign keys off, such as the sqlite3 "
        "shell), which the copy's foreign keys refuse. Look at them with "
        f'`sqlite3 {path} "SELECT * FROM events WHERE {ORPHANS}"`, delete them (as ON DELETE CASCADE would have) '
        f'with `sqlite3 {path} "DELETE FROM events WHERE {ORPHANS}"`, then run the {direction} again '
        f"(`recsys db {direction}`)")


def _recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _refuse_orphans("upgrade" if autoincrement else "downgrade")
    with op.batch_alter_table("events", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade() -> None:
    _recreate(True)


def downgrade() -> None:
    _recreate(False)
