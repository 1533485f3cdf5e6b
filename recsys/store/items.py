"""Item-level reads and writes used by the CLI, the API and notebooks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from recsys.errors import UnknownItem
from recsys.store.descriptions import description_details
from recsys.store.tables import Item, ItemMedia, ItemTag, utcnow


def get_item(session: Session, external_id: str) -> Item:
    item = session.scalar(select(Item).where(Item.external_id == external_id))
    if item is None:
        raise UnknownItem(f"unknown item id {external_id!r}; check the id (ids are strings, leading zeros count)")
    return item


def deleted_message(external_id: str) -> str:
    return (f"item {external_id!r} was deleted; a PUT of the item (or an import with its title) brings it back")


def item_details(session: Session, external_id: str) -> dict[str, Any]:
    it = get_item(session, external_id)
    media = session.scalars(select(ItemMedia).where(ItemMedia.item_id == it.id).order_by(ItemMedia.position))
    tags = session.scalars(select(ItemTag).where(ItemTag.item_id == it.id).order_by(ItemTag.facet,
                                                                                    ItemTag.score.desc()))
    return {
        "item_id": it.external_id, "title": it.title, "description": it.description, "category": it.category,
        "price": it.price, "in_stock": it.in_stock, "attributes": it.attributes, "hidden": it.hidden,
        "deleted": it.deleted, "content_hash": it.content_hash, "created_at": it.created_at,
        "updated_at": it.updated_at,
        "media": [{"kind": m.kind, "uri": m.uri, "status": m.status, "error": m.error} for m in media],
        "tags": [{"facet": t.facet, "label": t.label, "score": round(t.score, 4)} for t in tags],
        "generated_description": description_details(session, it.id),
    }


@dataclass(frozen=True)
class FlagChange:
    """What a hide, unhide or delete did, per id (each once, in the order given): ``changed`` had its flag set,
    ``unchanged`` had it already, ``still_deleted`` were shown again (unhidden) but stay deleted, so never served."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    still_deleted: list[str] = field(default_factory=list)


def change_flags(session: Session, external_ids: Sequence[str], **flags: bool) -> FlagChange:
    """Set hidden/deleted flags where they differ (``updated_at`` moves on those rows only); unknown ids raise
    before anything changes."""
    wanted = list(dict.fromkeys(external_ids))
    rows = {r.external_id: r for r in session.execute(select(Item.external_id, Item.id, Item.hidden, Item.deleted)
                                                      .where(Item.external_id.in_(wanted)))}
    missing = [e for e in wanted if e not in rows]
    if missing:
        raise UnknownItem(f"unknown item id(s) {missing[:5]}; nothing was changed")
    out = FlagChange()
    for e in wanted:
        r = rows[e]
        (out.changed if any(getattr(r, f) != v for f, v in flags.items()) else out.unchanged).append(e)
        if flags.get("hidden") is False and r.deleted and "deleted" not in flags:
            out.still_deleted.append(e)  # an unhide shows it again only once a PUT or import brings it back
    if out.changed:
        session.execute(update(Item).where(Item.id.in_([rows[e].id for e in out.changed]))
                        .values(**flags, updated_at=utcnow()))
    return out


def set_flags(session: Session, external_ids: Sequence[str], **flags: bool) -> int:
    """Set hidden/deleted flags (:func:`change_flags`): the number of items whose flags changed."""
    return len(change_flags(session, external_ids, **flags).changed)
