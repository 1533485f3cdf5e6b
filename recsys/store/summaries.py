"""What a client shows for a result without another request: title, category, price and an image URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from recsys.store.tables import Item, ItemMedia


def item_summaries(session: Session, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{item_id: {"title", "category", "price", "image_url"}}`` for the ids the store knows, in two reads.
    ``image_url`` is the server's ``/media/{id}`` for items with a recorded image, else None."""
    ids = list(dict.fromkeys(str(i) for i in item_ids))
    if not ids:
        return {}
    rows = session.execute(select(Item.id, Item.external_id, Item.title, Item.category, Item.price)
                           .where(Item.external_id.in_(ids))).all()
    pk = [r[0] for r in rows]
    with_image = set(session.scalars(select(ItemMedia.item_id).where(ItemMedia.item_id.in_(pk),
                                                                     ItemMedia.kind == "image")))
    return {str(ext): {"title": title or "", "category": category, "price": price,
                       "image_url": "/media/" + quote(str(ext), safe="") if key in with_image else None}
            for key, ext, title, category, price in rows}
