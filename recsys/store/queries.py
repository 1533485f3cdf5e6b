"""Read queries shared by the pipeline stages. They return external ids, never internal keys."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from recsys.store.tables import NOT_HISTORY, CatalogueState, Event, Item, ItemMedia, User


def events_frame(
    session: Session,
    *,
    types: Sequence[str] | None = None,
    users: Sequence[str] | None = None,
    since: datetime | None = None,
    training: bool = False,
) -> pd.DataFrame:
    """Events as a frame with columns user_id, item_id (external ids, str), type, value, ts, sorted by (ts, id).
    Impressions (feedback on a shown list, not interest) only when ``types`` names them. ``training``: only the
    events training reads, the evaluation users' left out (:func:`training_watermark` names them)."""
    q = (
        select(User.external_id.label("user_id"), Item.external_id.label("item_id"), Event.type, Event.value,
               Event.ts, Event.id.label("event_id"))
        .join(User, User.id == Event.user_id)
        .join(Item, Item.id == Event.item_id)
        .order_by(Event.ts, Event.id)
    )
    q = q.where(Event.type.in_(list(types)) if types else Event.type.not_in(NOT_HISTORY))
    if users is not None:
        q = q.where(User.external_id.in_(list(users)))
    if since is not None:
        q = q.where(Event.ts >= since)
    if training:
        q = q.where(~IS_EVALUATION_USER)
    rows = session.execute(q).all()
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "value", "ts", "event_id"])
    df["ts"] = pd.to_datetime(df["ts"])
    return df


Record = tuple[str, str, float | None, datetime, int]
"""One history event: (item_id, type, value, ts, event_id)."""


def user_event_records(session: Session | Connection, user_id: str, latest: int | None = None) -> list[Record]:
    """One user's events as :data:`Record` tuples sorted by (ts, id): the per-request read (no frame: building one
    costs more than the query). Empty for an unknown user. ``latest``: only the latest that many (still oldest
    first; :func:`latest_user_events`)."""
    if latest is None:
        return [tuple(r) for r in session.execute(USER_EVENTS, {"user_id": user_id})]  # type: ignore[misc]
    return user_event_records_of(session.execute(latest_user_events(latest), {"user_id": user_id}), newest_first=True)


def user_event_records_of(rows: Iterable[Sequence[Any]], newest_first: bool = False) -> list[Record]:
    """:func:`user_event_records` from the driver's rows of :data:`USER_EVENTS` (``Store.fetch``), or of
    :func:`latest_user_events` (``newest_first``: put back in time order): SQLite's driver hands timestamps over as
    the text SQLAlchemy stored."""
    out = [(i, t, v, ts if isinstance(ts, datetime) else datetime.fromisoformat(ts), e) for i, t, v, ts, e in rows]
    return out[::-1] if newest_first else out


# Events that are part of a history: impressions are left out (no bound parameter: the loop reads compile these
# statements themselves and pass only the user id).
IS_HISTORY = and_(*(Event.type != literal_column(f"'{t}'") for t in NOT_HISTORY))

# Built once: constructing the statement costs more than running it on a short history.
USER_EVENTS = (
    select(Item.external_id, Event.type, Event.value, Event.ts, Event.id)
    .join(User, User.id == Event.user_id)
    .join(Item, Item.id == Event.item_id)
    .where(User.external_id == bindparam("user_id"), IS_HISTORY)
    .order_by(Event.ts, Event.id)
)



@functools.lru_cache(maxsize=8)
def latest_user_events(limit: int) -> Select[str, str, float | None, datetime, int]:
    """:data:`USER_EVENTS`' latest ``limit`` rows, newest first: a request's read stays bounded however long the
    history (``ranking.max_events``; a shopper with 50,000 events took ~0.24 s to read in full). Kept per limit, so
    the loop reads compile each once (they key statements by identity)."""
    return USER_EVENTS.order_by(None).order_by(Event.ts.desc(), Event.id.desc()).limit(limit)


FIRST_EVENT = select(func.min(Event.id)).join(User, User.id == Event.user_id).where(
    User.external_id == bindparam("user_id"), IS_HISTORY)
"""The oldest id of a user's history events, from ix_events_user_type_id alone: what
``ItemStats.uncounted`` needs when a bounded read (:func:`latest_user_events`) did not reach it."""

Mark = tuple[int, int | None]
"""(how many events, the highest of their ids; None for none): what a set of one user's events is. Event ids are
never reused (migration 0008) and events are only ever added, or deleted all together with their user
(``delete_user``), never rewritten in place: a new event raises the highest id (whatever its timestamp), a deletion
lowers the count, and a user deleted and posting again gets ids above all the old ones. So the mark changes whenever
the set of ids does, and is read as two aggregates instead of the ids themselves (50,000 ids took ~0.1 s)."""


def request_state(conn: Session | Connection, user_id: str) -> tuple[Mark, int | None, int | None]:
    """(the :data:`Mark` of all the user's events, impressions included, the catalogue's removed-items version, its
    item-details version) in one statement: with the user's history mark (:func:`history_mark`, which changes only
    with the first) and the removed items of that version (:func:`removed_state`), everything a cached
    recommendation list depends on in the store. The versions are None where the schema keeps none (see migrations
    0003 and 0009)."""
    return request_state_of(conn.execute(REQUEST_STATE, {"user_id": user_id}))


def request_state_of(rows: Iterable[Sequence[Any]]) -> tuple[Mark, int | None, int | None]:
    """:func:`request_state` from the rows of :data:`REQUEST_STATE` (as ``Store.fetch`` returns them)."""
    ((count, last, removed, details),) = rows
    return (int(count), _int(last)), _int(removed), _int(details)


def history_mark(conn: Session | Connection, user_id: str) -> Mark:
    """The :data:`Mark` of the user's history (their events but impressions): the user's part of a cached list's
    key, (0, None) for an unknown user."""
    return history_mark_of(conn.execute(HISTORY_MARK, {"user_id": user_id}))


def history_mark_of(rows: Iterable[Sequence[Any]]) -> Mark:
    """:func:`history_mark` from the rows of :data:`HISTORY_MARK`."""
    ((count, last),) = rows
    return int(count), _int(last)


def _int(value: Any) -> int | None:
    """An aggregate or a version as an int, NULL as None."""
    return None if value is None else int(value)


def _values_and_versions(rows: Iterable[Sequence[Any]]) -> tuple[list[Any], tuple[Any, ...] | None]:
    """Rows ``(value, NULL...)`` and one ``(NULL, version...)`` (absent without the state row), split."""
    values: list[Any] = []
    versions = None
    for value, *state in rows:
        if value is not None:
            values.append(value)
        else:
            versions = tuple(state)
    return values, versions


def _state(column: Any) -> Any:
    """One column of the catalogue's state row as a scalar subquery: NULL without the row."""
    return select(column).where(CatalogueState.id == 1).scalar_subquery()


def _mark(*where: Any) -> Any:
    """A user's :data:`Mark`: one row whatever the user (an aggregate without GROUP BY). Only the user id is passed
    (see IS_HISTORY): ``Store.fetch`` runs these too."""
    return (select(func.count(Event.id), func.max(Event.id)).select_from(Event).join(User, User.id == Event.user_id)
            .where(User.external_id == bindparam("user_id"), *where))


# Both marks are read from ix_events_user_type_id alone (migration 0012: count, highest id, and the type that leaves
# impressions out), so a cached hit costs little however long the history, on SQLite and PostgreSQL alike.
REQUEST_STATE = _mark().add_columns(_state(CatalogueState.removed_version), _state(CatalogueState.details_version))

HISTORY_MARK = _mark(IS_HISTORY)
"""Read when the mark of all the events moved (``recsys.serving.requests.HistoryMarks``): an impression posted
changes that mark but not this one, and a cached list stays a hit."""


REMOVED_VERSION = select(CatalogueState.removed_version).where(CatalogueState.id == 1)

DETAILS_VERSION = select(CatalogueState.details_version).where(CatalogueState.id == 1)
"""Moves with any change of an item's title, category, price, stock, attributes or image (migrations 0009, 0011)."""


def items_changed_since(conn: Session | Connection,
                        since: datetime | None) -> list[tuple[str, str | None, float | None, bool, dict[str, Any]]]:
    """(item_id, category, price, in_stock, attributes) of the items not deleted whose ``updated_at`` is ``since``
    (naive UTC) or later, through the index on it: what changed after a generation's snapshot whose newest update
    was ``since`` (at ``since`` itself too: written in the same instant, it may have missed the snapshot). Empty
    when ``since`` is None (a snapshot without update times cannot tell)."""
    if since is None:
        return []
    q = (select(Item.external_id, Item.category, Item.price, Item.in_stock, Item.attributes)
         .where(Item.updated_at >= since, Item.deleted.is_(False)))
    return [(str(i), c, p, bool(s), a if isinstance(a, dict) else {}) for i, c, p, s, a in conn.execute(q)]


def removed_state(conn: Session | Connection) -> tuple[frozenset[str], int | None]:
    """(external ids of hidden or deleted items, the removed-items version they belong to), read together."""
    return removed_state_of(conn.execute(REMOVED_STATE))


def removed_state_of(rows: Iterable[Sequence[Any]]) -> tuple[frozenset[str], int | None]:
    """:func:`removed_state` from the rows of :data:`REMOVED_STATE`."""
    removed, versions = _values_and_versions(rows)
    return frozenset(removed), versions[0] if versions else None


# Hidden or deleted (DESIGN.md decision 6), the predicate of the partial index ix_items_removed: reads through it
# are proportional to the removed items, not to the catalogue.
_IS_REMOVED = Item.hidden.is_(True) | Item.deleted.is_(True)

REMOVED_STATE = union_all(
    select(Item.external_id, literal(None, BigInteger).label("removed_version")).where(_IS_REMOVED),
    select(literal(None, String), CatalogueState.removed_version).where(CatalogueState.id == 1),
)


def items_frame(session: Session, *, include_removed: bool = False) -> pd.DataFrame:
    """Items as a frame: item_id (external), title, description, category, price, in_stock, attributes, hidden,
    deleted, content_hash, created_at, updated_at, image (first image path or None), video (first video or None)."""
    q = select(Item).order_by(Item.id)
    if not include_removed:
        q = q.where(Item.deleted.is_(False))
    items = session.scalars(q).all()
    media: dict[int, dict[str, str]] = {}
    for m in session.scalars(select(ItemMedia).order_by(ItemMedia.item_id, ItemMedia.position)):
        media.setdefault(m.item_id, {}).setdefault(m.kind, m.uri)
    rows: list[dict[str, Any]] = []
    for it in items:
        first = media.get(it.id, {})
        rows.append({
            "item_id": it.external_id, "title": it.title, "description": it.description, "category": it.category,
            "price": it.price, "in_stock": it.in_stock, "attributes": it.attributes or {}, "hidden": it.hidden,
            "deleted": it.deleted, "content_hash": it.content_hash, "created_at": it.created_at,
            "updated_at": it.updated_at, "image": first.get("image"), "video": first.get("video"),
        })
    cols = ["item_id", "title", "description", "category", "price", "in_stock", "attributes", "hidden", "deleted",
            "content_hash", "created_at", "updated_at", "image", "video"]
    return pd.DataFrame(rows, columns=cols)


def events_watermark(session: Session) -> str:
    """What the stored events are, as far as training is concerned: "count:last id" of the events that make
    histories (impressions train nothing: posting them does not make the next build retrain)."""
    n, last = session.execute(select(func.count(Event.id), func.max(Event.id))
                              .where(Event.type.not_in(NOT_HISTORY))).one()
    return f"{n}:{last}"


def training_watermark(session: Session) -> str:
    """:func:`events_watermark` of the events training reads (``events_frame(session, training=True)``): the
    evaluation users' events left out, so replaying withheld shoppers asks for no retrain and no live recount."""
    n, last = session.execute(select(func.count(Event.id), func.max(Event.id))
                              .join(User, User.id == Event.user_id)
                              .where(Event.type.not_in(NOT_HISTORY), ~IS_EVALUATION_USER)).one()
    return f"{n}:{last}"


def frame_watermark(events: pd.DataFrame) -> str:
    """``events_watermark`` of the events an ``events_frame`` read holds. Taken from the frame itself, not by a
    second query: on PostgreSQL each statement of a session sees its own snapshot, and a ranker's manifest must name
    exactly the events it counted (``ItemStats.counted_through``)."""
    return f"{len(events)}:{int(events['event_id'].max()) if len(events) else None}"


def live_categories(session: Session, limit: int = 500) -> list[str]:
    """Distinct categories of the items not deleted, in order (the explorer's filter form)."""
    rows = session.scalars(select(Item.category).where(Item.category.is_not(None), Item.deleted.is_(False))
                           .distinct().order_by(Item.category).limit(limit))
    return [str(c) for c in rows if c]


def most_active_users(session: Session, limit: int = 24) -> list[tuple[str, int]]:
    """(user id, event count) of the users with the most events, most first (ties by id)."""
    n = func.count(Event.id)
    rows = session.execute(select(User.external_id, n).join(Event, Event.user_id == User.id)
                           .group_by(User.external_id).order_by(n.desc(), User.external_id).limit(limit))
    return [(str(u), int(c)) for u, c in rows]


def stats(session: Session) -> dict[str, Any]:
    """The `recsys stats --json` object (DESIGN.md section 4)."""

    def items_with_image(usable: bool) -> int:
        """Live items with an image that is usable (decoded, or not checked yet: pending), or else with one that
        failed (missing, not an image, a remote URL): that one shows no picture, so it does not count as one."""
        status = ItemMedia.status != "error" if usable else ItemMedia.status == "error"
        return int(session.scalar(
            select(func.count(func.distinct(ItemMedia.item_id))).join(Item, Item.id == ItemMedia.item_id)
            .where(ItemMedia.kind == "image", status, Item.deleted.is_(False))
        ) or 0)

    def by_type(replayed: bool) -> dict[str, int]:
        who = IS_EVALUATION_USER if replayed else ~IS_EVALUATION_USER
        q = select(Event.type, func.count()).join(User, User.id == Event.user_id).where(who).group_by(Event.type)
        return {k: int(v) for k, v in sorted(session.execute(q).all())}

    # users replayed by `evaluate --test-events` are no shop data (training leaves them out too): counted apart
    marked = select(IS_EVALUATION_USER, func.count()).group_by(IS_EVALUATION_USER)
    users: dict[Any, int] = dict(session.execute(marked).all())
    items = session.scalar(select(func.count()).select_from(Item).where(Item.deleted.is_(False))) or 0
    shop, replayed = by_type(False), by_type(True)
    return {
        "items": int(items),
        "items_with_image": items_with_image(usable=True),
        "items_with_broken_image": items_with_image(usable=False),
        "users": int(sum(n for mark, n in users.items() if not mark)),
        "events": sum(shop.values()),
        "events_by_type": shop,
        "evaluation_replays": {"users": int(users.get(True, 0)), "events": sum(replayed.values())},
    }


EVALUATION_MARK = "recsys_evaluation"
"""User attribute naming the ``evaluate --test-events`` file a user was replayed from: such users never train."""

IS_EVALUATION_USER = User.attributes[EVALUATION_MARK].as_string().is_not(None)
"""In SQL, alike on SQLite (``json_extract``) and PostgreSQL (``->>``): the user carries :data:`EVALUATION_MARK`
(its value is the file's name, never null). NULL for attributes that are no JSON object, so no match there."""


def user_ids(session: Session) -> set[str]:
    """Every stored user's external id."""
    return set(session.scalars(select(User.external_id)))


def evaluation_users(session: Session) -> set[str]:
    """Users replayed by ``recsys evaluate --test-events`` (see :data:`EVALUATION_MARK`): the users whose events
    ``events_frame(training=True)`` and :func:`training_watermark` leave out (the same predicate)."""
    return set(map(str, session.scalars(select(User.external_id).where(IS_EVALUATION_USER))))


def mark_evaluation_users(store: Any, users: set[str], source: str) -> None:
    """Mark these users as evaluation users (kept out of training), in one transaction."""
    if not users:
        return
    with store.session() as s:
        for u in s.scalars(select(User).where(User.external_id.in_(sorted(users)))):
            if EVALUATION_MARK not in (u.attributes or {}):
                u.attributes = {**(u.attributes or {}), EVALUATION_MARK: source}
