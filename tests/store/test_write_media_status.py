"""An item sent again keeps the checked status of each image it still has: embedding does not check an unchanged
image again (its vector key is cached), so a broken image rewritten as pending lost its reason for good and was
served (on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from recsys.config import Settings
from recsys.encoders import embed_catalog
from recsys.store import Store
from recsys.store.importers import run_import
from recsys.store.importers.generic import item_record
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from recsys.store.items import set_flags
from recsys.store.queries import stats
from recsys.store.tables import Item, ItemMedia
from tests.encoders.fixtures import tiny_open_clip_preset

BROKEN = "not an image (unrecognised data)"


def _upsert(store: Store, records: list[ItemRecord]) -> TableCounts:
    counts = TableCounts()
    with store.session() as s:
        upsert_items(s, records, counts)
    return counts


def _media(store: Store, item_id: str) -> list[tuple[str, str, str | None]]:
    with store.session() as s:
        q = (select(ItemMedia.uri, ItemMedia.status, ItemMedia.error).join(Item, Item.id == ItemMedia.item_id)
             .where(Item.external_id == item_id).order_by(ItemMedia.position))
        return [(u, st, e) for u, st, e in s.execute(q)]


def _checked(store: Store, statuses: dict[str, tuple[str, str | None]]) -> None:
    """What an embed run records: per uri, ok or error with its reason."""
    with store.session() as s:
        for uri, (status, error) in statuses.items():
            s.execute(update(ItemMedia).where(ItemMedia.uri == uri).values(status=status, error=error))


def test_an_unchanged_image_keeps_its_status_new_and_changed_ones_are_pending(store: Store) -> None:
    _upsert(store, [ItemRecord("p1", "Bag", media=[("image", "/m/bad.gif")]),
                    ItemRecord("p2", "Shoe", media=[("image", "/m/red.png"), ("image", "/m/side.png")])])
    _checked(store, {"/m/bad.gif": ("error", BROKEN), "/m/red.png": ("ok", None), "/m/side.png": ("ok", None)})
    # a new price, the same images (p2's in another order, one of them replaced)
    counts = _upsert(store, [ItemRecord("p1", "Bag", price=12.0, media=[("image", "/m/bad.gif")]),
                             ItemRecord("p2", "Shoe", price=3.0, media=[("image", "/m/new.png"),
                                                                        ("image", "/m/red.png")])])
    assert counts.updated == 2
    assert _media(store, "p1") == [("/m/bad.gif", "error", BROKEN)]
    assert _media(store, "p2") == [("/m/new.png", "pending", None), ("/m/red.png", "ok", None)]


def test_an_api_post_or_put_restating_the_image_keeps_its_reason(store: Store, tmp_path: Path) -> None:
    """The records POST /v1/items and PUT build (item_record: the fields given, the rest kept)."""
    image = str(tmp_path / "bad.gif")
    _upsert(store, [item_record({"item_id": "w-p1", "title": "Bag", "image": image}, tmp_path)])
    _checked(store, {image: ("error", BROKEN)})
    _upsert(store, [item_record({"item_id": "w-p1", "price": 5, "image": image}, tmp_path)])  # POST, price added
    assert _media(store, "w-p1") == [(image, "error", BROKEN)]
    put = {"item_id": "w-p1", "title": "Bag", "description": "", "category": None, "price": 7.0, "in_stock": True,
           "image": image, "attributes": {}}
    _upsert(store, [item_record(put, tmp_path)])
    assert _media(store, "w-p1") == [(image, "error", BROKEN)]


def test_a_reimport_with_a_new_price_keeps_the_broken_images_reason(store: Store, settings: Settings,
                                                                    tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"GIF89a garbage")
    f = tmp_path / "items.csv"
    f.write_text("item_id,title,price,image\nimp-img1,Lamp,10,broken.jpg\n")
    run_import(store, "items", f, settings=settings)
    uri = _media(store, "imp-img1")[0][0]
    _checked(store, {uri: ("error", BROKEN)})
    f.write_text("item_id,title,price,image\nimp-img1,Lamp,12,broken.jpg\n")
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].updated == 1
    assert _media(store, "imp-img1") == [(uri, "error", BROKEN)]


def test_stats_count_an_item_whose_only_image_failed_as_broken_not_as_with_image(store: Store) -> None:
    _upsert(store, [ItemRecord("ok", "A", media=[("image", "/m/ok.png")]),
                    ItemRecord("bad", "B", media=[("image", "/m/bad.gif")]),
                    ItemRecord("new", "C", media=[("image", "/m/new.png")]),  # not embedded yet: pending
                    ItemRecord("mixed", "D", media=[("image", "/m/bad2.gif"), ("image", "/m/ok2.png")]),
                    ItemRecord("none", "E"),
                    ItemRecord("gone", "F", media=[("image", "/m/gone.png")])])
    _checked(store, {"/m/ok.png": ("ok", None), "/m/bad.gif": ("error", BROKEN), "/m/bad2.gif": ("error", BROKEN),
                     "/m/ok2.png": ("ok", None), "/m/gone.png": ("ok", None)})
    with store.session() as s:
        set_flags(s, ["gone"], deleted=True)
    with store.session() as s:
        st = stats(s)
    assert (st["items"], st["items_with_image"], st["items_with_broken_image"]) == (5, 3, 2)


def test_embed_keeps_reporting_a_broken_image_after_a_price_update(tmp_path: Path) -> None:
    """The whole loop on the real embedder: the item's vector key does not change with its price, so the embed after
    the update re-checks only the media recorded as failed; a pending one was never checked again."""
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 't.db'}")
    settings.encoder.batch_size, settings.encoder.num_workers, settings.encoder.device = 8, 0, "cpu"
    settings.encoder.preset = tiny_open_clip_preset(settings, tmp_path / "ckpt")
    store = Store(settings.db_url)
    store.upgrade()
    (tmp_path / "broken.jpg").write_bytes(b"GIF89a garbage not really")
    f = tmp_path / "items.csv"
    for price in (10, 12):
        f.write_text(f"item_id,title,price,image\nimp-img1,Lamp,{price},broken.jpg\n")
        run_import(store, "items", f, settings=settings)
        report = embed_catalog(store, settings)
        assert report.broken_media == 1 and "imp-img1" in report.errors, (price, report)
        assert [(st, e is not None) for _, st, e in _media(store, "imp-img1")] == [("error", True)], price
    assert report.encoded == 0  # the update changed no vector
    store.dispose()
