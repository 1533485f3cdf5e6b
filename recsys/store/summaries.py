"""What a client shows for a result without another request: title, category, price and an image URL."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from sqlalchemy import Executable, bindparam, exists, select

from recsys.store.tables import Item, ItemMedia

CHUNK = 250
"""Ids per read: a statement is built and compiled once per id count, so the counts stay few."""


def item_summaries(read: Callable[[Executable, Mapping[str, Any]], list[tuple[Any, ...]]],
                   item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{item_id: {"title", "category", "price", "image_url"}}`` for the ids the store knows, in one read (it is
    on every ranked list's path): ``read`` is :meth:`recsys.store.db.Store.read`. ``image_url`` is the server's
    ``/media/{id}`` for items with a recorded image that did not fail to decode."""
    ids = list(dict.fromkeys(str(i) for i in item_ids))
    if not ids:
        return {}
    rows = [r for at in range(0, len(ids), CHUNK) for part in [ids[at:at + CHUNK]]
            for r in read(summaries_statement(len(part)), {f"id{n}": i for n, i in enumerate(part)})]
    return {str(ext): {"title": title or "", "category": category, "price": price,
                       "image_url": "/media/" + quote(str(ext), safe="") if img else None}
            for ext, title, category, price, img in rows}


@functools.lru_cache(maxsize=256)
def summaries_statement(n: int) -> Executable:
    """The read of ``n`` items' summaries with one plain bind per id (``id0``...), built once per ``n``: the
    driver-level reads (:mod:`recsys.store.loop_reads`) compile a statement once and take no expanding binds."""
    return (
        select(Item.external_id, Item.title, Item.category, Item.price,
               exists().where(ItemMedia.item_id == Item.id, ItemMedia.kind == "image", ItemMedia.status != "error")
               .label("img"))  # an image that failed to decode is not served by /media: no URL to a 404
        .where(Item.external_id.in_([bindparam(f"id{i}") for i in range(n)]))
    )
