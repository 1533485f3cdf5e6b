"""Media status per use of a file (uri and kind), remote images that stay shown, and pictures outside the media
roots that say why they are not shown (audit "media" D2, D3, D4)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from recsys.config import Settings
from recsys.encoders import embed_catalog
from recsys.encoders.catalog import OUTSIDE_ROOTS
from recsys.encoders.media import REMOTE_REASON
from recsys.store import Item, ItemMedia, Store
from tests.encoders.fixtures import COLOURS, add_item, garment, tiny_video


def _status(store: Store, item_id: str) -> list[tuple[str, str, str | None]]:
    with store.session() as s:
        return [tuple(r) for r in s.execute(select(ItemMedia.kind, ItemMedia.status, ItemMedia.error)
                                            .join(Item, Item.id == ItemMedia.item_id)
                                            .where(Item.external_id == item_id))]  # type: ignore[misc]


def test_one_file_as_a_video_and_as_an_image_has_the_status_of_each_use(store: Store, tiny: Settings,
                                                                        tmp_path: Path) -> None:
    clip = tiny_video(tmp_path / "clip.mp4")  # a good video, but not an image
    add_item(store, "v1", "clip as video", media=[("video", clip)])
    add_item(store, "v2", "clip as image", media=[("image", clip)])
    first = embed_catalog(store, tiny)
    assert _status(store, "v1") == [("video", "ok", None)]
    assert _status(store, "v2") == [("image", "error", "a video file in the image column: put it in `video`")]
    assert list(first.errors) == ["v2"]
    again = embed_catalog(store, tiny)  # the failed use is retried; the good one keeps its status
    assert again.broken_media == 1 and list(again.errors) == ["v2"]
    assert [st for _, st, _ in _status(store, "v1") + _status(store, "v2")] == ["ok", "error"]


def test_a_remote_image_stays_shown_with_its_reason(store: Store, tiny: Settings) -> None:
    add_item(store, "remote", "a photo on the web", media=[("image", Path("x"))])
    with store.session() as s:  # stored as "error" by an older embed: the next one makes it pending again
        s.execute(ItemMedia.__table__.update().values(uri="https://example.com/a.jpg", status="error", error="old"))
    embed_catalog(store, tiny)
    assert _status(store, "remote") == [("image", "pending", REMOTE_REASON)]
    assert "download them and import the local files" in REMOTE_REASON


def test_a_picture_outside_the_media_roots_says_why_it_is_not_shown(store: Store, tiny: Settings,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tiny.home / "photos").mkdir(parents=True)
    outside = garment(tmp_path / "elsewhere" / "photo.png", COLOURS["red"], fmt="PNG")
    inside = garment(tiny.home / "photos" / "photo.png", COLOURS["blue"], fmt="PNG")
    add_item(store, "out", "outside", media=[("image", outside)])
    add_item(store, "in", "inside", media=[("image", inside)])
    report = embed_catalog(store, tiny)
    assert report.with_image == 2  # still embedded
    assert _status(store, "out") == [("image", "ok", OUTSIDE_ROOTS)] and "RECSYS_API__MEDIA_ROOTS" in OUTSIDE_ROOTS
    assert _status(store, "in") == [("image", "ok", None)]
    tiny.api.media_roots = [tmp_path / "elsewhere"]
    garment(outside, COLOURS["green"], fmt="PNG")  # the note is refreshed when the item is encoded again
    embed_catalog(store, tiny)
    assert _status(store, "out") == [("image", "ok", None)]
