"""Image paths are stored as given, absolute, without ``..`` but with their links kept (audit "media" D1, D2, D3):
a link loop was a traceback losing the whole file, a linked photo was stored as the link's target (repointing the
link was never seen), and a link loop lying in the catalogue's folder crashed the import after its commit."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from recsys.config import Settings
from recsys.encoders.cache import media_identity
from recsys.errors import NotFound
from recsys.store import Item, ItemMedia, Store
from recsys.store.importers import run_import
from recsys.store.media_roots import FILE, _linked_folders, media_roots


def _photo(path: Path, colour: tuple[int, int, int], side: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), colour).save(path, "PNG")
    return path


def _uris(store: Store, item_id: str) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(ItemMedia.uri).join(Item, Item.id == ItemMedia.item_id)
                              .where(Item.external_id == item_id).order_by(ItemMedia.position)))


def _loop(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loop_a.jpg").symlink_to("loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to("loop_a.jpg")
    return folder / "loop_a.jpg"


def test_a_link_loop_is_stored_and_the_rest_of_the_file_imports(store: Store, settings: Settings,
                                                                tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    loop = _loop(shop / "img")
    (shop / "items.csv").write_text("item_id,title,image\nA1,Good item,\nA2,Loop item,img/loop_a.jpg\n")
    report = run_import(store, "items", shop / "items.csv", settings=settings)
    assert report.tables["items"].inserted == 2 and not report.bad_rows
    assert _uris(store, "A2") == [str(loop)]  # embed reads it and says "Too many levels of symbolic links"


def test_a_linked_photo_keeps_its_own_name_and_a_repointed_link_is_seen(store: Store, settings: Settings,
                                                                       tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    red, blue = _photo(shop / "img" / "red.png", (255, 0, 0)), _photo(shop / "img" / "blue.png", (0, 0, 255), 48)
    (shop / "img" / "current.png").symlink_to("red.png")
    (shop / "alias").symlink_to(shop / "img")  # one file named two ways in one row: one medium, as before
    (shop / "items.csv").write_text("item_id,title,image\nL1,Linked,img/current.png|sub/../alias/current.png\n"
                                    "L2,Plain,./sub/../img/red.png\n")
    run_import(store, "items", shop / "items.csv", settings=settings)
    current = str(shop / "img" / "current.png")
    assert _uris(store, "L1") == [current] and _uris(store, "L2") == [str(red)]  # absolute, no "..", links kept
    before = media_identity(current)
    (shop / "img" / "current.png").unlink()
    (shop / "img" / "current.png").symlink_to(blue.name)  # the photo at that path is now another one
    assert media_identity(current) != before and media_identity(current).startswith(current + "|")


class _Rec:
    """What ``/media/ID`` asks of the recommender: the item's details, with the media as stored."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_item(self, item_id: str) -> dict[str, Any]:
        return {"item_id": item_id, "media": [{"kind": "image", "uri": u, "status": "ok"}
                                              for u in _uris(self.store, item_id)]}


def test_a_link_is_served_by_its_target_now_and_only_under_a_media_root(store: Store, settings: Settings,
                                                                        tmp_path: Path) -> None:
    from recsys.api.web.pages import media_file

    shop = tmp_path / "shop"
    _photo(shop / "img" / "red.png", (255, 0, 0))
    blue = _photo(shop / "img" / "blue.png", (0, 0, 255))
    secret = _photo(tmp_path / "private" / "s.png", (0, 0, 0))  # under no media root
    (shop / "img" / "current.png").symlink_to("red.png")
    (shop / "img" / "escape.png").symlink_to(secret)
    (shop / "items.csv").write_text("item_id,title,image\nL1,Linked,img/current.png\nL2,Escape,img/escape.png\n")
    run_import(store, "items", shop / "items.csv", settings=settings)  # records shop/ as a media root
    (shop / "img" / "current.png").unlink()
    (shop / "img" / "current.png").symlink_to("blue.png")
    roots = media_roots(settings)
    served = media_file(_Rec(store), "L1", 0, roots, settings.home)
    assert isinstance(served, tuple) and served[0] == blue.resolve()
    with pytest.raises(NotFound):  # a link inside a root to a file outside every root stays refused
        media_file(_Rec(store), "L2", 0, roots, settings.home)


def test_a_link_loop_in_the_catalogue_folder_is_skipped_and_the_folder_recorded(store: Store, settings: Settings,
                                                                               tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    _loop(shop / "img")
    _photo(shop / "img" / "a.png", (200, 0, 0))
    (shop / "items.csv").write_text("item_id,title,image\nA1,Red thing,img/a.png\n")
    run_import(store, "items", shop / "items.csv", settings=settings)  # OSError ELOOP after the commit
    assert json.loads((settings.home / FILE).read_text()) == [os.path.realpath(shop)]


def test_an_entry_that_cannot_be_statted_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "images").symlink_to(disk)
    real = os.scandir

    class Locked:  # an entry under a folder we may not search (root can stat anything, so faked here)
        path = str(shop / "locked")

        def is_dir(self) -> bool:
            raise PermissionError(13, "Permission denied", self.path)

        def is_symlink(self) -> bool:
            raise PermissionError(13, "Permission denied", self.path)

    def scandir(d: Any) -> Iterator[Any]:
        yield Locked()
        yield from real(d)

    monkeypatch.setattr("recsys.store.media_roots.os.scandir", scandir)
    assert _linked_folders(shop) == [Path(os.path.realpath(disk))]  # the rest is still looked at
