"""Bulk writes: items and users are upserted by external id, events inserted once per (user, client event id); an
event whose id is stored for another event is told apart by its content (:func:`stored_otherwise`).

Statements are executemany batches (SQLAlchemy's insertmanyvalues on both SQLite and PostgreSQL), never one ORM add
per row. Everything runs in the caller's transaction so a failed import leaves the store as it was. An item given
other images loses its generated description (written from the old ones) in the same transaction. An id given again
by a later batch of an import is a repeated id, as within one batch (:func:`_count`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from recsys.errors import StoreBusy
from recsys.store.descriptions import remove_descriptions
from recsys.store.importers.records import ITEM_FIELDS, EventRecord, ItemRecord, UserRecord
from recsys.store.importers.repeats import SpillingMap
from recsys.store.importers.report import TableCounts
from recsys.store.tables import Event, Item, ItemMedia, User, utcnow

R = TypeVar("R", ItemRecord, UserRecord)
_CHUNK = 900  # stays under SQLite's bound-parameter limit in IN (...) lists


def _chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _dialect_insert(session: Session) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def id_map(session: Session, table: type[Item] | type[User], external_ids: Iterable[str], *,
           key_share: bool = False) -> dict[str, int]:
    """external id -> internal key for the given ids that exist. ``key_share``: the rows stay locked against
    deletion until the transaction ends (PostgreSQL's FOR KEY SHARE; SQLite serialises writers anyway)."""
    ids = list(dict.fromkeys(external_ids))
    out: dict[str, int] = {}
    for part in _chunks(ids):
        q = select(table.external_id, table.id).where(table.external_id.in_(part))
        rows = session.execute(q.with_for_update(key_share=True) if key_share else q)
        out.update({e: i for e, i in rows})
    return out


Outcome = tuple[str, str | None, str]
"""Of an id's row in a batch: what writing it did ("inserted", "updated" or "unchanged"), the id's stored state
before (None: not stored) and after (digests)."""
_MARKS = {"inserted": "+", "updated": "~", "unchanged": "="}
_COUNTED = {m: did for did, m in _MARKS.items()}


def _count(counts: TableCounts, outcomes: dict[str, Outcome], seen: SpillingMap | None) -> None:
    """Count each id's row. An id that an earlier batch of the import gave (``seen``: per id, how its rows were
    counted and its state before the import) is a repeated id, as within one batch, and its first count becomes
    what the whole file did to it: an id the import inserted stays inserted (never "updated"), a stored one is
    updated, or unchanged where its last row leaves it as it was. The counts of a file do not depend on where its
    batches end; ``seen`` is bounded in memory (:class:`~recsys.store.importers.repeats.SpillingMap`)."""
    earlier: dict[str, str] = seen.get_many(list(outcomes)) if seen is not None else {}
    tally = dict.fromkeys(_MARKS, 0)
    for key, (did, before, after) in outcomes.items():
        if key not in earlier:
            tally[did] += 1
            earlier[key] = _MARKS[did] + (before or "")
            continue
        first = _COUNTED[earlier[key][0]]
        stored = earlier[key][1:] if first != "inserted" else None
        net = "inserted" if stored is None else "unchanged" if stored == after else "updated"
        tally[first] -= 1
        tally[net] += 1
        counts.repeated += 1
        earlier[key] = _MARKS[net] + (stored or "")
    counts.inserted += tally["inserted"]
    counts.updated += tally["updated"]
    counts.unchanged += tally["unchanged"]
    if seen is not None:
        seen.put_many(earlier)


_PASSES = 3
"""Writes of one batch: a second pass updates the rows a concurrent import inserted first; a third is for an item
inserted and then gone again meanwhile."""


def _settle(write: Callable[[list[R]], list[R]], records: list[R], table: str) -> None:
    """Run ``write`` until it leaves no record unwritten. A new id that another import inserts between this one's read
    and its insert is skipped by the insert (ON CONFLICT DO NOTHING) and returned, then written again as an update of
    the now stored row: both imports succeed and the last writer's values stay."""
    for _ in range(_PASSES):
        records = write(records)
        if not records:
            return
    raise StoreBusy(f"another writer kept changing the same {table} ({', '.join(r.external_id for r in records[:3])}"
                    f"{', ...' if len(records) > 3 else ''}) while this import wrote them; running it again is safe")


def upsert_items(session: Session, records: Sequence[ItemRecord], counts: TableCounts,
                 seen: SpillingMap | None = None) -> None:
    """Insert new items, update changed ones (by content hash), leave unchanged ones alone. A record that gives only
    some fields (:attr:`ItemRecord.given`) updates those: an existing item keeps its stored values of the others, and
    a deleted one stays deleted unless the record gives a title (a catalogue record brings it back; an empty title
    is none, and the deleted item keeps its own). ``seen``: the ids of the import's earlier batches
    (:func:`_count`). Safe beside a concurrent import of the same ids (:func:`_settle`)."""
    given = len(records)
    records = list({r.external_id: r for r in records}.values())  # last one wins within a batch
    counts.repeated += given - len(records)
    outcomes: dict[str, Outcome] = {}
    _settle(lambda todo: _write_items(session, todo, outcomes), records, "items")
    _count(counts, outcomes, seen)


def _write_items(session: Session, records: list[ItemRecord], outcomes: dict[str, Outcome]) -> list[ItemRecord]:
    """One pass of :func:`upsert_items`; returns the new records another writer inserted first (not yet written)."""
    existing: dict[str, tuple[int, str, bool]] = {}
    for part in _chunks([r.external_id for r in records]):
        q = select(Item.external_id, Item.id, Item.content_hash, Item.deleted).where(Item.external_id.in_(part))
        existing.update({e: (i, h, d) for e, i, h, d in session.execute(q)})
    # an empty title is no title: it neither brings a deleted item back nor blanks the title that item keeps
    records = [replace(r, given=(r.given or ITEM_FIELDS) - {"title"}) if not r.title and r.external_id in existing
               and existing[r.external_id][2] else r for r in records]
    same_media = {r.external_id for r in records if r.given is not None and "media" not in r.given}
    # a record without a title (a price or stock feed) updates a deleted item without bringing it back; a catalogue
    # record naming the item (with its title) does
    stays_deleted = {r.external_id for r in records if r.given is not None and "title" not in r.given
                     and r.external_id in existing and existing[r.external_id][2]}
    records = _with_stored_fields(session, records, existing)
    now = utcnow()
    new, changed = [], []
    for r in records:
        h = r.content_hash()
        row = {"external_id": r.external_id, "title": r.title, "description": r.description,
               "category": r.category, "price": r.price, "in_stock": r.in_stock, "attributes": r.attributes,
               "content_hash": h, "updated_at": now}
        if r.external_id not in existing:
            new.append({**row, "created_at": now, "hidden": False, "deleted": False})
            outcomes[r.external_id] = ("inserted", None, "")
            continue
        _, stored_hash, deleted = existing[r.external_id]
        was = f"{stored_hash[:16]}{int(deleted)}"  # 64 bits of the hash tell one item's versions apart
        if stored_hash != h or (deleted and r.external_id not in stays_deleted):
            changed.append({**row, "id": existing[r.external_id][0], "deleted": r.external_id in stays_deleted})
            outcomes[r.external_id] = ("updated", was, f"{h[:16]}{int(r.external_id in stays_deleted)}")
        else:
            outcomes[r.external_id] = ("unchanged", was, was)
    inserted = _insert_new(session, Item, new)
    if changed:
        session.execute(update(Item), changed)
    late = [r for r in records if r.external_id not in existing and r.external_id not in inserted]
    for r in late:
        del outcomes[r.external_id]
    touched = inserted | {str(r["external_id"]) for r in changed}
    touched -= same_media & set(existing)  # their stored media (and its checked status) stay as they are
    if not touched:
        return late
    before = _replace_media(session, records, touched)
    # A generated description was written from the item's images (their mean, so order does not count): other
    # images make it stale; a change of title or price alone keeps it. The lexical index follows by triggers.
    other_images = [pk for r in records if r.external_id in existing and (pk := existing[r.external_id][0]) in before
                    and {(k, u) for k, u in r.media} != set(before[pk])]
    if other_images:
        remove_descriptions(session, other_images)
    return late


def _insert_new(session: Session, table: type[Item] | type[User], rows: list[dict[str, Any]]) -> set[str]:
    """Insert ``rows`` in one bulk statement, skipping any whose external id is stored by now (a concurrent import
    committed it after this one read); returns the external ids inserted."""
    if not rows:
        return set()
    ins = _dialect_insert(session)(table.__table__).on_conflict_do_nothing(index_elements=["external_id"])
    return {str(e) for (e,) in session.execute(ins.returning(table.__table__.c.external_id), rows)}


def _replace_media(session: Session, records: Sequence[ItemRecord],
                   touched: set[str]) -> dict[int, dict[tuple[str, str], tuple[str, str | None]]]:
    """Write the media of the ``touched`` records in their order; returns per item key its media before, (kind, uri)
    -> (status, error). A medium that stays keeps its checked status and reason: embedding re-checks only media whose
    status is error or whose item's vector key changed, so rewriting it as pending lost a broken image's reason for
    good (and served its bytes). New media are pending until embedded."""
    ids = id_map(session, Item, touched)
    before: dict[int, dict[tuple[str, str], tuple[str, str | None]]] = {pk: {} for pk in ids.values()}
    for part in _chunks(list(ids.values())):
        deleted = delete(ItemMedia).where(ItemMedia.item_id.in_(part)).returning(
            ItemMedia.item_id, ItemMedia.kind, ItemMedia.uri, ItemMedia.status, ItemMedia.error)
        for pk, kind, uri, status, error in session.execute(deleted):
            before[pk][(kind, uri)] = (status, error)
    media = []
    for r in records:
        if r.external_id not in touched:
            continue
        pk = ids[r.external_id]
        for pos, (kind, uri) in enumerate(dict.fromkeys(r.media)):
            status, error = before[pk].get((kind, uri), ("pending", None))
            media.append({"item_id": pk, "kind": kind, "uri": uri, "position": pos, "status": status, "error": error})
    if media:
        session.execute(insert(ItemMedia), media)
    return before


def _with_stored_fields(session: Session, records: list[ItemRecord],
                        existing: dict[str, tuple[int, str, bool]]) -> list[ItemRecord]:
    """``records`` with every field a record does not give taken from its stored item (new items keep defaults)."""
    partial = {r.external_id: r for r in records
               if r.given is not None and r.external_id in existing and r.given != ITEM_FIELDS}
    if not partial:
        return records
    keys = {existing[e][0]: e for e in partial}
    stored: dict[str, dict[str, Any]] = {}
    media: dict[str, list[tuple[str, str]]] = {e: [] for e in partial}
    for part in _chunks(list(keys)):
        for row in session.execute(select(Item.id, Item.title, Item.description, Item.category, Item.price,
                                          Item.in_stock, Item.attributes).where(Item.id.in_(part))):
            stored[keys[row.id]] = {"title": row.title or "", "description": row.description or "",
                                    "category": row.category, "price": row.price, "in_stock": bool(row.in_stock),
                                    "attributes": dict(row.attributes or {})}
        q = select(ItemMedia.item_id, ItemMedia.kind, ItemMedia.uri).where(ItemMedia.item_id.in_(part)) \
            .order_by(ItemMedia.item_id, ItemMedia.position)
        for item_key, kind, uri in session.execute(q):
            media[keys[item_key]].append((kind, uri))
    out = []
    for r in records:
        if r.external_id in partial and r.external_id in stored:
            keep = {f: v for f, v in {**stored[r.external_id], "media": media[r.external_id]}.items()
                    if f not in (r.given or ITEM_FIELDS)}
            r = replace(r, **keep, given=ITEM_FIELDS)
        out.append(r)
    return out


def upsert_users(session: Session, records: Sequence[UserRecord], counts: TableCounts,
                 seen: SpillingMap | None = None) -> None:
    """Insert new users, update changed ones. A record that gives only some attributes (:attr:`UserRecord.given`)
    updates those: the stored user keeps every other one, as an item keeps the fields a price feed leaves out.
    ``seen``: the ids of the import's earlier batches (:func:`_count`)."""
    given = len(records)
    records = list({r.external_id: r for r in records}.values())
    counts.repeated += given - len(records)
    outcomes: dict[str, Outcome] = {}
    _settle(lambda todo: _write_users(session, todo, outcomes), records, "users")
    _count(counts, outcomes, seen)


def _write_users(session: Session, records: list[UserRecord], outcomes: dict[str, Outcome]) -> list[UserRecord]:
    """One pass of :func:`upsert_users`; returns the new records another writer inserted first (not yet written)."""
    existing: dict[str, tuple[int, Any]] = {}
    for part in _chunks([r.external_id for r in records]):
        q = select(User.external_id, User.id, User.attributes).where(User.external_id.in_(part))
        existing.update({e: (i, a) for e, i, a in session.execute(q)})
    attrs = {r.external_id: _merged(r, existing[r.external_id][1] if r.external_id in existing else None)
             for r in records}
    new = [{"external_id": r.external_id, "attributes": attrs[r.external_id], "created_at": utcnow()}
           for r in records if r.external_id not in existing]
    changed = [{"id": existing[r.external_id][0], "attributes": attrs[r.external_id]} for r in records
               if r.external_id in existing and existing[r.external_id][1] != attrs[r.external_id]]
    inserted = _insert_new(session, User, new)
    if changed:
        session.execute(update(User), changed)
    for r in records:
        if r.external_id not in existing:
            if r.external_id in inserted:
                outcomes[r.external_id] = ("inserted", None, "")
            continue
        before, after = _digest(existing[r.external_id][1]), _digest(attrs[r.external_id])
        outcomes[r.external_id] = ("unchanged" if existing[r.external_id][1] == attrs[r.external_id] else "updated",
                                   before, after)
    return [r for r in records if r.external_id not in existing and r.external_id not in inserted]


def _digest(attributes: Any) -> str:
    """64 bits of a user's attributes (their order aside), which tell one user's versions apart."""
    text_ = json.dumps(attributes or {}, sort_keys=True, default=str)
    return hashlib.blake2b(text_.encode(), digest_size=8).hexdigest()


def _merged(rec: UserRecord, stored: dict[str, Any] | None) -> dict[str, Any]:
    """The attributes to store: the record's, over the stored ones it does not name (those it names without a
    value are gone)."""
    if rec.given is None or not stored:
        return rec.attributes
    merged = {k: v for k, v in stored.items() if k not in rec.given or k in rec.attributes}  # keeps their order
    merged.update(rec.attributes)
    return merged


def _lock_order(session: Session, rows: list[Any], key: Any = None) -> list[Any]:
    """``rows`` in key order on PostgreSQL: two batches inserting the same new users (or client event ids) in other
    orders each waited on the other's uncommitted row, a deadlock that failed one batch whole. SQLite serialises
    writers, and there the file's order is kept: it decides the keys, so an import (and every build and figure made
    from it) stays the same run after run."""
    return sorted(rows, key=key) if session.get_bind().dialect.name == "postgresql" else rows


def ensure_users(session: Session, external_ids: Iterable[str]) -> dict[str, int]:
    """Map user ids to keys, creating users that events mention for the first time."""
    ids = list(dict.fromkeys(external_ids))
    # Locked against a concurrent DELETE of the user until the events are in: else the insert fails on the foreign
    # key and the whole batch with it (the delete waits, then removes the user with these events).
    known = id_map(session, User, ids, key_share=True)
    missing = _lock_order(session, [e for e in ids if e not in known])
    if missing:
        ins = _dialect_insert(session)(User.__table__).on_conflict_do_nothing(index_elements=["external_id"])
        session.execute(ins, [{"external_id": e, "attributes": {}, "created_at": utcnow()} for e in missing])
        known.update(id_map(session, User, missing, key_share=True))
    return known


def insert_events(session: Session, records: Sequence[EventRecord]) -> list[int | None]:
    """Store events; returns per record the new event key, or None when it was already stored (same client id).

    Records whose item is unknown must be filtered out by the caller (see :func:`unknown_items`).
    """
    users = ensure_users(session, (r.user_id for r in records))
    items = id_map(session, Item, (r.item_id for r in records))
    rows: list[dict[str, Any]] = [
        {"user_id": users[r.user_id], "item_id": items[r.item_id], "type": r.type, "value": r.value, "ts": r.ts,
         # An event without a client id can never be a duplicate: give it a unique one so results correlate.
         "client_event_id": r.client_event_id or f"auto:{uuid.uuid4().hex}", "created_at": utcnow(),
         "recommendation_id": r.recommendation_id, "position": r.position}
        for r in records
    ]
    if not rows:
        return []
    ins = _dialect_insert(session)(Event.__table__).on_conflict_do_nothing(
        index_elements=["user_id", "client_event_id"]
    ).returning(Event.__table__.c.id, Event.__table__.c.user_id, Event.__table__.c.client_event_id)
    stored: dict[tuple[int, str], int] = {}
    for part in _chunks(_lock_order(session, rows, key=lambda r: (r["user_id"], r["client_event_id"])), 2000):
        for eid, uid, cid in session.execute(ins, list(part)).all():
            stored[(uid, cid)] = eid
    return [stored.pop((int(row["user_id"]), str(row["client_event_id"])), None) for row in rows]


def stored_otherwise(session: Session, records: Sequence[EventRecord],
                     untimed: Sequence[bool] | None = None) -> list[str | None]:
    """Per record that :func:`insert_events` found stored (its user's client id taken): None where the stored event
    is this one (item, type, time and value; attribution where the record gives it), else what the stored one is.
    ``untimed``: per record, whether its time is the server's clock, not the client's (a retry of an event posted
    without one is stamped anew), so it is not compared. One read per chunk of records, never one per row."""
    users = id_map(session, User, (r.user_id for r in records))
    keys = [(users.get(r.user_id), r.client_event_id) for r in records]
    stored: dict[tuple[int | None, str | None], Any] = {}
    for part in _chunks(list(dict.fromkeys(k for k in keys if k[0] is not None)), _CHUNK // 2):
        by_user: dict[Any, list[Any]] = {}
        for user, cid in part:
            by_user.setdefault(user, []).append(cid)
        # per user an IN list of ids, which both databases look up in the (user, client id) index: a row-value IN
        # (VALUES ...) scanned the whole events table on SQLite
        q = select(Event.user_id, Event.client_event_id, Item.external_id, Event.type, Event.value, Event.ts,
                   Event.recommendation_id, Event.position).join(Item, Item.id == Event.item_id) \
            .where(or_(*(and_(Event.user_id == u, Event.client_event_id.in_(c)) for u, c in by_user.items())))
        stored.update({(row.user_id, row.client_event_id): row for row in session.execute(q)})
    out: list[str | None] = []
    for n, (r, key) in enumerate(zip(records, keys, strict=True)):
        s = stored.get(key)
        ts = s.ts if s is not None and untimed is not None and untimed[n] else r.ts
        if s is None or ((s.external_id, s.type, s.value, s.ts) == (r.item_id, r.type, r.value, ts)
                         and r.recommendation_id in (None, s.recommendation_id) and r.position in (None, s.position)):
            out.append(None)  # the same event (None: gone meanwhile with its user, nothing to tell apart)
        else:
            out.append(f"{'an' if s.type[0] in 'aeiou' else 'a'} {s.type} of {s.external_id!r} at "
                       f"{s.ts.isoformat(sep=' ')}" + ("" if s.value is None else f", value {s.value:g}"))
    return out


def unknown_items(session: Session, item_ids: Iterable[str]) -> set[str]:
    ids = set(item_ids)
    return ids - set(item_states(session, ids))


def item_states(session: Session, item_ids: Iterable[str]) -> dict[str, bool]:
    """external id -> deleted, for the given ids the store holds (one read per chunk of ids)."""
    ids = list(dict.fromkeys(item_ids))
    out: dict[str, bool] = {}
    for part in _chunks(ids):
        rows = session.execute(select(Item.external_id, Item.deleted).where(Item.external_id.in_(part)))
        out.update({e: bool(d) for e, d in rows})
    return out
