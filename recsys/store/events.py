"""Live event ingestion: validate each event, store the good ones in one commit, report per event.

The API, the CLI's ``--test-events`` replay and notebooks all use this path; an event is acknowledged only after
its transaction commits, and a repeated client event id is reported as a duplicate, not stored twice, when it repeats
the same event (a retry); under another event it is an error naming the event that holds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from recsys.store.db import Store
from recsys.store.importers.records import EventRecord, parse_event_type, parse_float, parse_id, parse_ts
from recsys.store.importers.writer import insert_events, item_states, stored_otherwise
from recsys.store.tables import Event, ServedList, User, utcnow


@dataclass(frozen=True)
class EventResult:
    index: int
    status: str
    """"stored", "duplicate" or "error"."""
    event_id: int | None = None
    error: str | None = None
    warning: str | None = None
    """Stored, but worth a look: the item was deleted (the event stays in the history; the item is never shown)."""


def parse_event(raw: Mapping[str, Any], *, now: datetime | None = None) -> EventRecord:
    """One event from a mapping (user_id, item_id, type, value?, timestamp?, event_id?, recommendation_id?,
    position?); raises ValueError."""
    ts = raw.get("timestamp", raw.get("ts"))
    cid = raw.get("event_id", raw.get("client_event_id"))
    rid = raw.get("recommendation_id")
    pos = raw.get("position")
    if rid not in (None, "") and (not isinstance(rid, str) or len(rid) > 64):
        raise ValueError("recommendation_id is a string of at most 64 characters")
    if pos is not None and (isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos < 2**31):
        raise ValueError("position is a non-negative integer")
    return EventRecord(
        user_id=parse_id(raw.get("user_id"), "user_id"),
        item_id=parse_id(raw.get("item_id"), "item_id"),
        type=parse_event_type(raw.get("type")),
        ts=parse_ts(ts) if ts not in (None, "") else (now or utcnow()),
        value=parse_float(raw.get("value"), "value"),
        client_event_id=None if cid in (None, "") else str(cid)[:200],
        recommendation_id=None if rid in (None, "") else str(rid),
        position=pos,
    )


def ingest_events(store: Store, events: Sequence[Mapping[str, Any]]) -> list[EventResult]:
    """Store a batch of events; each gets its own result, bad ones never block good ones."""
    results: dict[int, EventResult] = {}
    parsed: list[tuple[int, EventRecord]] = []
    now = utcnow()
    for i, raw in enumerate(events):
        try:
            parsed.append((i, parse_event(raw, now=now)))
        except (ValueError, TypeError, AttributeError) as e:
            results[i] = EventResult(i, "error", error=str(e))
    with store.session() as s:
        states = item_states(s, (r.item_id for _, r in parsed))  # one read: unknown and deleted items
        missing = {r.item_id for _, r in parsed} - set(states)
        deleted = {i for i, gone in states.items() if gone}
        good = []
        for i, r in parsed:
            if r.item_id in missing:
                results[i] = EventResult(i, "error", error=f"unknown item id {r.item_id!r}")
            else:
                good.append((i, r))
        # Within one batch a repeated client id is a duplicate of the earlier one, if it is the same event.
        seen: dict[tuple[str, str], EventRecord] = {}
        unique = []
        for i, r in good:
            key = (r.user_id, r.client_event_id or "")
            if r.client_event_id and key in seen:
                first = seen[key]
                results[i] = (EventResult(i, "duplicate") if same_event(first, r) else EventResult(
                    i, "error", error=_taken(r, f"another event in this batch ({_said(first)})")))
                continue
            seen[key] = r
            unique.append((i, r))
        ids = insert_events(s, [r for _, r in unique])
        # a client id stored for another event (ids restarted by the client): an error, never a silent "duplicate"
        again = [(i, r) for (i, r), eid in zip(unique, ids, strict=True) if eid is None]
        untimed = [events[i].get("timestamp", events[i].get("ts")) in (None, "") for i, _ in again]
        for (i, r), other in zip(again, stored_otherwise(s, [r for _, r in again], untimed) if again else [],
                                 strict=True):
            if other is not None:
                results[i] = EventResult(i, "error", error=_taken(r, f"another stored event ({other})"))
    for (i, r), eid in zip(unique, ids, strict=True):
        if i in results:
            continue
        warning = (f"item {r.item_id!r} was deleted: the event is kept in the user's history, the item is never "
                   "shown (a PUT of the item brings it back)") if r.item_id in deleted else None
        results[i] = EventResult(i, "stored", eid, warning=warning) if eid is not None else EventResult(i, "duplicate")
    return [results[i] for i in range(len(events))]


def same_event(a: EventRecord, b: EventRecord) -> bool:
    """Whether two events under one client id are the same event (a client's retry) rather than two."""
    return ((a.item_id, a.type, a.value, a.ts, a.recommendation_id, a.position)
            == (b.item_id, b.type, b.value, b.ts, b.recommendation_id, b.position))


def _said(r: EventRecord) -> str:
    return f"{r.type} of {r.item_id!r} at {r.ts.isoformat(sep=' ')}"


def _taken(r: EventRecord, other: str) -> str:
    return (f"event_id {r.client_event_id!r} of user {r.user_id!r} is already used for {other}; a stored event is "
            "never rewritten: give each event its own id (this one was not stored)")


def delete_user(store: Store, user_id: str) -> int:
    """Remove a user, all their events and the lists served to them (one transaction); the number of events
    removed. A user who was only served lists (an unknown user's recommendations, a search with ``user_id``) has no
    user row: their lists go all the same. UnknownUser for an id the store knows nothing of."""
    from sqlalchemy import delete, func

    from recsys.errors import UnknownUser

    with store.session() as s:
        uid = s.scalar(select(User.id).where(User.external_id == user_id))
        # else "shown before" (and the user id in every recorded list) outlives the user
        lists = s.scalar(select(func.count(ServedList.id)).where(ServedList.user_id == user_id))
        s.execute(delete(ServedList).where(ServedList.user_id == user_id))
        if uid is None:
            if not lists:
                raise UnknownUser(f"unknown user id {user_id!r}")
            return 0
        n = s.scalar(select(func.count(Event.id)).where(Event.user_id == uid))
        s.execute(delete(Event).where(Event.user_id == uid))
        s.execute(delete(User).where(User.id == uid))
    return int(n or 0)
