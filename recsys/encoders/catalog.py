"""Reading the catalogue from the store for the encoders, and writing back media status and tags."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from sqlalchemy import select, update

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


def failed_media(store: Store) -> set[str]:
    """The uris of media whose last decode failed (``ItemMedia.status`` error): each run tries them again."""
    with store.session() as s:
        return set(s.scalars(select(ItemMedia.uri).where(ItemMedia.status == "error")))


def record_media_status(store: Store, results: Mapping[str, str | None]) -> None:
    """Set ``ItemMedia.status``/``error`` by uri: None -> ok, a reason string -> error."""
    if not results:
        return
    ok = [u for u, r in results.items() if r is None]
    with store.session() as s:
        for i in range(0, len(ok), 500):
            s.execute(update(ItemMedia).where(ItemMedia.uri.in_(ok[i : i + 500]), ItemMedia.status != "ok")
                      .values(status="ok", error=None))
        for uri, reason in results.items():
            if reason is not None:
                s.execute(update(ItemMedia).where(ItemMedia.uri == uri).values(status="error", error=reason[:2000]))


def item_pks(store: Store, external_ids: Iterable[str]) -> dict[str, int]:
    ids = list(external_ids)
    out: dict[str, int] = {}
    with store.session() as s:
        for i in range(0, len(ids), 500):
            out.update(dict(s.execute(select(Item.external_id, Item.id)
                                      .where(Item.external_id.in_(ids[i : i + 500]))).all()))
    return out
