"""Item-level reads and writes used by the CLI, the API and notebooks."""

from __future__ import annotations

from collections.abc import Sequence
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


def set_flags(session: Session, external_ids: Sequence[str], **flags: bool) -> int:
    """Set hidden/deleted flags; unknown ids raise before anything changes."""
    ids = dict(session.execute(select(Item.external_id, Item.id).where(Item.external_id.in_(list(external_ids)))).all())
    missing = [e for e in external_ids if e not in ids]
    if missing:
        raise UnknownItem(f"unknown item id(s) {missing[:5]}; nothing was changed")
    session.execute(update(Item).where(Item.id.in_(list(ids.values()))).values(**flags, updated_at=utcnow()))
    return len(ids)
