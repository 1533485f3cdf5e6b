"""Reading the catalogue from the store for the encoders, and writing back media status and tags."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import and_, or_, select, update

from recsys.encoders.text import ItemRecord, poor_text
from recsys.store import Item, ItemMedia, Store
from recsys.store.descriptions import generated_texts


def read_items(store: Store, *, include_deleted: bool = False, generated_below: int = 0) -> list[ItemRecord]:
    """Every item (deleted ones left out unless asked) with its media in position order, by item id.

    Items whose title and description are shorter than ``generated_below`` characters carry their generated
    description (if they have one), which then counts as one more text field.
    """
    with store.session() as s:
        q = select(Item.id, Item.external_id, Item.title, Item.description, Item.category, Item.attributes,
                   Item.content_hash, Item.deleted).order_by(Item.external_id)
        rows = s.execute(q).all()
        media: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
        for item_id, pos, kind, uri in s.execute(
            select(ItemMedia.item_id, ItemMedia.position, ItemMedia.kind, ItemMedia.uri)
        ):
            media[item_id].append((pos, kind, uri))
        generated = generated_texts(s) if generated_below > 0 else {}
    out = []
    for pk, ext, title, desc, cat, attrs, chash, deleted in rows:
        if deleted and not include_deleted:
            continue
        ms = tuple((k, u) for _, k, u in sorted(media.get(pk, []), key=lambda m: m[0]))
        gen = generated.get(pk, "") if poor_text(title or "", desc or "", generated_below) else ""
        out.append(ItemRecord(ext, title or "", desc or "", cat, attrs or {}, chash or "", ms, gen))
    return out


MediaKey = tuple[str, str]
"""(uri, kind): one use of a file, whose status is its own (a clip can be one item's video, another's image)."""

OUTSIDE_ROOTS = ("embedded, but not shown: the file lies outside the media roots; add its folder to "
                 "RECSYS_API__MEDIA_ROOTS to show it")


def failed_media(store: Store) -> set[MediaKey]:
    """The (uri, kind) of media whose last decode failed (``ItemMedia.status`` error): each run tries them again."""
    with store.session() as s:
        return {(u, k) for u, k in s.execute(select(ItemMedia.uri, ItemMedia.kind).where(ItemMedia.status == "error"))}


def _rows(key: str | MediaKey) -> Any:
    """The ItemMedia rows of a status key: (uri, kind), or a bare uri (every kind: older callers)."""
    if isinstance(key, tuple):
        return and_(ItemMedia.uri == key[0], ItemMedia.kind == key[1])
    return ItemMedia.uri == key


def record_media_status(store: Store, results: Mapping[Any, str | None], outside: Collection[Any] = ()) -> None:
    """Set ``ItemMedia.status``/``error`` by (uri, kind) (or by bare uri): None -> ok, a reason string -> error. A
    remote image's reason (never fetched) leaves it "pending" with the reason: it is not broken, and the explorer
    and the API keep showing it from its address. ``outside``: the ok keys whose file is not served (outside the
    media roots): ok, with :data:`OUTSIDE_ROOTS` as their note."""
    if not results:
        return
    ok: dict[tuple[str | None, str | None], list[str]] = defaultdict(list)  # (kind, note) -> uris
    for key, reason in results.items():
        if reason is None:
            uri, kind = key if isinstance(key, tuple) else (key, None)
            ok[kind, OUTSIDE_ROOTS if key in outside else None].append(uri)
    with store.session() as s:
        for (kind, note), uris in ok.items():
            for i in range(0, len(uris), 500):
                stale = ItemMedia.error.is_not(None) if note is None else ItemMedia.error.is_(None)
                where = [ItemMedia.uri.in_(uris[i : i + 500]), or_(ItemMedia.status != "ok", stale)]
                s.execute(update(ItemMedia).where(*where, *([ItemMedia.kind == kind] if kind else []))
                          .values(status="ok", error=note))
        for key, reason in results.items():
            if reason is not None:
                uri = key[0] if isinstance(key, tuple) else key
                remote = urlparse(uri).scheme in ("http", "https")
                s.execute(update(ItemMedia).where(_rows(key))
                          .values(status="pending" if remote else "error", error=reason[:2000]))


def item_pks(store: Store, external_ids: Iterable[str]) -> dict[str, int]:
    ids = list(external_ids)
    out: dict[str, int] = {}
    with store.session() as s:
        for i in range(0, len(ids), 500):
            out.update(dict(s.execute(select(Item.external_id, Item.id)
                                      .where(Item.external_id.in_(ids[i : i + 500]))).all()))
    return out
