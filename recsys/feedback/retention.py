"""How long the feedback loop's records are kept: ``recsys feedback trim`` deletes the served lists (and, when asked,
the impression events) stored before a cut.

Every answered list is a ``served_lists`` row (about 400 bytes: 3.6 GB a day at 100 requests/s) and a page shown
with impressions posts one event per item; nothing else ever deletes them. Old ones serve nothing: attribution and
the feedback report look at recent lists, feeds page within minutes, ``exclude_shown_hours`` within hours, and
impressions train nothing. The rows go in batches, each its own short transaction, so a running server's writer
and requests wait at most one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select

from recsys.errors import ValidationFailed
from recsys.store import Store
from recsys.store.tables import Event, ServedList, utcnow

BATCH = 5_000
"""Rows deleted per transaction."""
MIN_DAYS, MAX_DAYS = 1.0, 36_500.0
"""The shortest retention (a typo such as ``--older-than 0.01`` must not take the lists a feed is paging through) and
the longest (a century: beyond it the cut is no date)."""


@dataclass(frozen=True)
class TrimReport:
    cut: datetime
    """Rows stored before this time (UTC) are the ones deleted."""
    served_lists: int
    impressions: int
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cut": self.cut.isoformat(timespec="seconds") + "Z"}


def trim(store: Store, older_than_days: float, *, impressions: bool = False, dry_run: bool = False,
         now: datetime | None = None, batch: int = BATCH,
         progress: Callable[[str, int], None] | None = None) -> TrimReport:
    """Delete the served lists stored more than ``older_than_days`` ago, and with ``impressions`` the impression
    events stored then too; ``dry_run`` counts them and deletes nothing. ``progress(table, deleted so far)`` after
    each batch. Events that name a deleted list keep their ``recommendation_id``; the feedback report, which starts
    from the lists, no longer counts them."""
    if not MIN_DAYS <= older_than_days <= MAX_DAYS:  # NaN and infinity too
        raise ValidationFailed(f"--older-than must be at least {MIN_DAYS:g} day and at most {MAX_DAYS:,.0f}, got "
                               f"{older_than_days}: nothing was deleted")
    cut = (now or utcnow()) - timedelta(days=older_than_days)
    lists = _trim(store, ServedList.id, ServedList.created_at < cut, dry_run, batch, progress, "served_lists")
    shown = 0
    if impressions:
        old = (Event.type == "impression") & (Event.created_at < cut)
        shown = _trim(store, Event.id, old, dry_run, batch, progress, "impressions")
    return TrimReport(cut, lists, shown, dry_run)


def _trim(store: Store, key: Any, old: ColumnElement[bool], dry_run: bool, batch: int,
          progress: Callable[[str, int], None] | None, what: str) -> int:
    table = key.class_
    if dry_run:
        with store.session() as s:
            return int(s.scalar(select(func.count()).select_from(table).where(old)) or 0)
    done = 0
    while True:
        with store.session() as s:  # one short transaction per batch: the server's writes interleave
            ids = select(key).where(old).limit(batch).scalar_subquery()
            done_now = s.execute(delete(table).where(key.in_(ids)).execution_options(synchronize_session=False))
            n = int(getattr(done_now, "rowcount", 0) or 0)
        done += n
        if progress is not None and n:
            progress(what, done)
        if n < batch:
            return done
