"""Which posted events a served list led to: the ones that carry its ``recommendation_id``, come from the user it
was served to (any user for a list recorded without one: a session's, trending, more-like-these, or an item
page's or search list asked without ``user_id``), name an item it showed, happened after it was served
(their ``timestamp`` no more than :data:`CLOCK_SKEW` before the list's time, for clients' clocks), and are the first of
their type for that item and list. Anything else carrying the id (a typo'd or reused id, a click on an item the list
never held, another user's purchase, a repeated impression, an older event replayed with a newer list's id) is
counted apart as ``unattributed``, so a rate never rests on events a list cannot have had.

The events are counted in SQL per (list, user, item, type), and each list's items are read once: the report costs
one row per distinct combination, not per event, and no JSON is parsed per event.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recsys.store.tables import Event, Item, ServedList, User

CLOCK_SKEW = timedelta(minutes=5)
"""How far before its list's time an event's timestamp may lie and still count (a device clock a little behind)."""


def attributed(session: Session, keys: Sequence[Any], types: Sequence[str],
               *where: Any) -> Iterator[tuple[tuple[Any, ...], str | None, int]]:
    """(the list's ``keys`` values, the event type or None for events the list cannot have led to, how many) for
    the events that carry the id of a served list matching ``where``."""
    n = len(keys)
    # the latest event of each group: the one credited (once) can be any, so one after the list is enough
    q = (select(*keys, ServedList.id, ServedList.user_id, User.external_id, Item.external_id, Event.type,
                func.count(Event.id), func.max(Event.ts), func.max(ServedList.created_at))
         .join(ServedList, ServedList.id == Event.recommendation_id)
         .join(User, User.id == Event.user_id).join(Item, Item.id == Event.item_id)
         .where(Event.type.in_(list(types)), *where)
         .group_by(*keys, ServedList.id, ServedList.user_id, User.external_id, Item.external_id, Event.type))
    rows = session.execute(q).all()
    shown = _items_of(session, sorted({r[n] for r in rows}))
    credited: set[tuple[str, str, str]] = set()  # (list, item, type): once, whoever posted it on a session's list
    for row in rows:
        key, (list_id, list_user, user, item, etype, count, last, served) = tuple(row[:n]), row[n:]
        ok = item in shown.get(list_id, ()) and (list_user is None or list_user == user) \
            and _after(last, served) and (list_id, item, etype) not in credited
        if ok:
            credited.add((list_id, item, etype))
            yield key, etype, 1
            count -= 1
        if count:
            yield key, None, int(count)


def _after(event_ts: datetime | None, served_at: datetime | None) -> bool:
    """Whether an event at ``event_ts`` can answer a list served at ``served_at`` (both naive UTC), clock skew
    allowed; an unknown time on either side is given the benefit of the doubt."""
    return event_ts is None or served_at is None or event_ts >= served_at - CLOCK_SKEW


def _items_of(session: Session, list_ids: Sequence[str], chunk: int = 500) -> dict[str, frozenset[str]]:
    """Each list's shown items, read once per list (in chunks: a long IN list is refused by some drivers)."""
    out: dict[str, frozenset[str]] = {}
    for i in range(0, len(list_ids), chunk):
        part = list_ids[i:i + chunk]
        for list_id, items in session.execute(select(ServedList.id, ServedList.item_ids)
                                              .where(ServedList.id.in_(part))):
            out[list_id] = frozenset(items or ())
    return out
