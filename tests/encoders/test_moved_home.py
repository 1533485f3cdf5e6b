"""A data directory moved or copied since its import keeps its image vectors: the encoders find its pictures where
the explorer does (``recsys.store.media_roots.relocated``), and never a file outside the media roots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from sqlalchemy import select

from recsys.config import Settings
from recsys.encoders import embed_catalog, load_item_vectors
from recsys.encoders.media import MediaFinder
from recsys.store import ItemMedia, Store
from tests.encoders.fixtures import COLOURS, add_item, garment


def _catalogue(store: Store, home: Path) -> None:
    """Pictures inside the data directory, recorded by absolute path, as `recsys demo` and imports there do."""
    images = home / "demo-data" / "images"
    images.mkdir(parents=True)
    add_item(store, "a", "red shirt", media=[("image", garment(images / "a.jpg", COLOURS["red"]))])
    add_item(store, "b", "blue dress", media=[("image", garment(images / "b.png", COLOURS["blue"], "dress", "PNG"))])
    add_item(store, "c", "text only")


def test_a_moved_home_embeds_the_same_image_vectors(store: Store, tiny: Settings, tmp_path: Path) -> None:
    _catalogue(store, tiny.home)
    first = embed_catalog(store, tiny)
    before = load_item_vectors(tiny, store)
    assert (first.encoded, first.with_image, first.broken_media) == (3, 2, 0)
    moved = tiny.model_copy(update={"home": tmp_path / "moved"})
    os.rename(tiny.home, moved.home)  # `mv shop shop2`
    again = embed_catalog(store, moved)
    assert (again.encoded, again.cached, again.with_image, again.broken_media) == (0, 3, 2, 0), again
    after = load_item_vectors(moved, store)
    np.testing.assert_array_equal(after.image, before.image)
    with store.session() as s:
        assert set(s.scalars(select(ItemMedia.status))) == {"ok"}


def test_a_copied_home_reencodes_its_pictures_from_the_copy(store: Store, tiny: Settings, tmp_path: Path) -> None:
    """A copy whose files have new times (``cp -r``) encodes them again, from the copy: same image vectors."""
    _catalogue(store, tiny.home)
    embed_catalog(store, tiny)
    before = load_item_vectors(tiny, store)
    copy = tiny.model_copy(update={"home": tmp_path / "copy"})
    shutil.copytree(tiny.home, copy.home, copy_function=shutil.copy)  # new modification times
    shutil.rmtree(tiny.home)
    again = embed_catalog(store, copy)
    assert (again.encoded, again.with_image, again.broken_media) == (2, 2, 0), again
    np.testing.assert_allclose(load_item_vectors(copy, store).image, before.image, atol=1e-6)


def test_the_finder_never_returns_a_file_outside_the_media_roots(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "shop" / "images").mkdir(parents=True)
    outside.mkdir()
    (home / "shop" / "images" / "a.jpg").write_bytes(b"x")
    (outside / "secret.jpg").write_bytes(b"secret")
    (home / "shop" / "images" / "secret.jpg").symlink_to(outside / "secret.jpg")  # a link out of the home
    find = MediaFinder(home, [Path(os.path.realpath(home))])
    assert find("/old/place/shop/images/a.jpg") == str(home.resolve() / "shop" / "images" / "a.jpg")
    assert find("file:///old/place/shop/images/a.jpg") == str(home.resolve() / "shop" / "images" / "a.jpg")
    assert find("/old/place/shop/images/secret.jpg") == "/old/place/shop/images/secret.jpg"  # left as recorded
    assert find("/old/place/shop/../shop/images/a.jpg") == "/old/place/shop/../shop/images/a.jpg"
    assert find("https://example.com/shop/images/a.jpg") == "https://example.com/shop/images/a.jpg"
    there = str(outside / "secret.jpg")
    assert find(there) == there  # a recorded file that is there is read where it is, as before


def test_the_api_uses_the_store_lookup() -> None:
    """One lookup, in the store; the explorer imports it (dependencies point inward)."""
    import recsys.api.media as api_media
    import recsys.store.media_roots as store_media

    assert api_media.relocated is store_media.relocated and api_media.under_roots is store_media.under_roots
    assert api_media.media_roots is store_media.media_roots


def test_describe_reads_a_moved_homes_pictures(store: Store, tiny: Settings, tmp_path: Path) -> None:
    """`recsys items describe` reads photos (tower features and colour statistics) where the encoders do."""
    from recsys.describe.pixels import pixel_features
    from recsys.describe.run import image_rows
    from recsys.encoders import get_encoder
    from recsys.encoders.catalog import read_items
    from recsys.encoders.fit import limits_of

    _catalogue(store, tiny.home)
    moved = tiny.model_copy(update={"home": tmp_path / "moved"})
    os.rename(tiny.home, moved.home)
    items = read_items(store)
    _, vectors, failed = image_rows(get_encoder(moved, fitted=False), items, moved)
    assert failed == {2: "no image"} and np.all(np.linalg.norm(vectors[:2], axis=1) > 0.99)
    pixels = pixel_features(items, limits_of(moved), 0, MediaFinder.of(moved))
    assert np.all(np.abs(pixels[:2]).sum(axis=1) > 0) and not pixels[2].any()
