"""Which posted events a served list led to: the ones that carry its ``recommendation_id``, come from the user it
was served to (any user for a session's list), name an item it showed, and are the first of their type for that
item and list. Anything else carrying the id (a typo'd or reused id, a click on an item the list never held, a
repeated impression) is counted apart as ``unattributed``, so a rate never rests on events a list cannot have had.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recsys.store.tables import Event, Item, ServedList, User


def attributed(session: Session, keys: Sequence[Any], types: Sequence[str],
               *where: Any) -> Iterator[tuple[tuple[Any, ...], str | None]]:
    """(the list's ``keys`` values, the event type or None when the event is not the list's) per event that carries
    the id of a served list matching ``where``."""
    q = (select(*keys, ServedList.id, ServedList.user_id, ServedList.item_ids, Event.type, User.external_id,
                Item.external_id)
         .join(ServedList, ServedList.id == Event.recommendation_id)
         .join(User, User.id == Event.user_id).join(Item, Item.id == Event.item_id)
         .where(Event.type.in_(list(types)), *where))
    seen: set[tuple[str, str, str, str]] = set()
    shown: dict[str, frozenset[str]] = {}
    n = len(keys)
    for row in session.execute(q):
        key, (list_id, list_user, item_ids, etype, user, item) = tuple(row[:n]), row[n:]
        items = shown.get(list_id)
        if items is None:
            items = shown[list_id] = frozenset(item_ids or ())
        first = (list_id, user, item, etype) not in seen
        seen.add((list_id, user, item, etype))
        ok = first and item in items and (list_user is None or list_user == user)
        yield key, etype if ok else None
