"""What a client shows for a result without another request: title, category, price and an image URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from sqlalchemy import bindparam, exists, select
from sqlalchemy.engine import Connection

from recsys.store.tables import Item, ItemMedia


def item_summaries(conn: Connection, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{item_id: {"title", "category", "price", "image_url"}}`` for the ids the store knows, in one read (it is
    on every ranked list's path). ``image_url`` is the server's ``/media/{id}`` for items with a recorded image that
    did not fail to decode."""
    ids = list(dict.fromkeys(str(i) for i in item_ids))
    if not ids:
        return {}
    rows = conn.execute(SUMMARIES, {"ids": ids}).all()
    return {str(ext): {"title": title or "", "category": category, "price": price,
                       "image_url": "/media/" + quote(str(ext), safe="") if img else None}
            for ext, title, category, price, img in rows}


# Built once (an expanding parameter takes the ids): constructing the statement cost more than running it.
SUMMARIES = (
    select(Item.external_id, Item.title, Item.category, Item.price,
           exists().where(ItemMedia.item_id == Item.id, ItemMedia.kind == "image", ItemMedia.status != "error")
           .label("img"))  # an image that failed to decode is not served by /media: no URL to a 404
    .where(Item.external_id.in_(bindparam("ids", expanding=True)))
)
