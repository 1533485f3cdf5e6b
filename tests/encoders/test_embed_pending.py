"""``recsys embed``'s summary is the same on every run for an http(s) image, and an image URL of a scheme recsys
does not read says so (audit "media" D6, D7): the pending remote image was counted as broken and listed by the run
that encoded its item and by no later one; ``s3://bucket/a.jpg`` was "file not found: s3:/bucket/a.jpg"."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from recsys.config import Settings
from recsys.encoders import embed_catalog
from recsys.encoders.media import REMOTE_REASON, MediaError, MediaFinder, MediaLimits, load_media
from recsys.store import Item, ItemMedia, Store
from tests.encoders.fixtures import add_item


def _set_uri(store: Store, item_id: str, uri: str) -> None:
    with store.session() as s:
        pk = s.scalar(select(Item.id).where(Item.external_id == item_id))
        s.execute(update(ItemMedia).where(ItemMedia.item_id == pk).values(uri=uri))


def _status(store: Store, item_id: str) -> list[tuple[str, str | None]]:
    with store.session() as s:
        return [(st, err) for st, err in s.execute(select(ItemMedia.status, ItemMedia.error)
                                                   .join(Item, Item.id == ItemMedia.item_id)
                                                   .where(Item.external_id == item_id))]


def test_a_pending_remote_image_is_never_counted_as_broken(store: Store, tiny: Settings, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    add_item(store, "broken", "a broken photo", media=[("image", empty)])
    add_item(store, "remote", "a photo on the web", media=[("image", Path("x"))])
    _set_uri(store, "remote", "https://example.com/u9.jpg")
    runs = [embed_catalog(store, tiny) for _ in range(2)]  # the second finds both items cached
    assert [(r.broken_media, list(r.errors)) for r in runs] == [(1, ["broken"])] * 2
    assert runs[1].encoded == 0
    assert _status(store, "remote") == [("pending", REMOTE_REASON)]  # still shown from its address


@pytest.mark.parametrize("uri", ["s3://my-bucket/photos/a.jpg", "gs://b/c.png", "ftp://files.example.com/a.jpg",
                                 "S3://b/a.jpg"])
def test_an_image_url_of_another_scheme_says_it_is_not_fetched(uri: str, tmp_path: Path) -> None:
    scheme = uri.split(":", 1)[0].lower()
    assert MediaFinder(tmp_path, [tmp_path])(uri) == uri  # not looked for as a file of a moved data directory
    with pytest.raises(MediaError, match=f"^{scheme}:// images are not fetched: download them and import the local "
                                         "files"):
        load_media(uri, "image", MediaLimits())


def test_an_unsupported_scheme_is_recorded_with_its_reason(store: Store, tiny: Settings) -> None:
    add_item(store, "bucket", "a photo in a bucket", media=[("image", Path("x"))])
    _set_uri(store, "bucket", "s3://my-bucket/photos/a.jpg")
    report = embed_catalog(store, tiny)
    assert report.broken_media == 1 and report.errors["bucket"].startswith("s3:// images are not fetched")
    assert _status(store, "bucket") == [("error", report.errors["bucket"])]  # never shown: /media answers 404


def test_a_windows_drive_and_a_file_url_are_still_files(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="^file not found"):
        load_media("C:\\photos\\a.jpg", "image", MediaLimits())
    with pytest.raises(MediaError, match="^file not found"):
        load_media(f"file://{tmp_path}/missing%20photo.jpg", "image", MediaLimits())
