"""The start-up banner's example calls run as printed: the image search uploads a real image of the store."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from recsys.cli.serve import _banner, example_ids
from recsys.config import Settings
from recsys.store import Store
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items


def _store_with(settings: Settings, images: dict[str, str]) -> None:
    store = Store.open(settings)
    try:
        with store.session() as s:
            records = [ItemRecord(i, f"Item {i}", "", "bag", media=[("image", uri)]) for i, uri in images.items()]
            upsert_items(s, records, TableCounts())
    finally:
        store.dispose()


def _image_line(out: str) -> list[str]:
    return shlex.split(next(line for line in out.splitlines() if "/v1/search/image" in line))


def test_the_image_search_example_names_an_image_file_of_the_store(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # `-F image=@photo.jpg` pasted as printed gave "HTTP 000" and nothing else (curl's error hidden by -s)
    settings = Settings(home=tmp_path / "home")
    photo = tmp_path / "home" / "demo-data" / "images" / "00002.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"\x89PNG\r\n\x1a\n")
    _store_with(settings, {"a1": str(tmp_path / "moved-away.png"), "a2": str(photo)})  # a1's file is gone
    user, item, image, query = example_ids(settings)
    assert item == "a1" and image == str(photo.resolve())
    _banner("127.0.0.1", 8123, False, user, item, image, query)
    out = capsys.readouterr().out
    words = _image_line(out)
    assert f"image=@{photo.resolve()}" in words and Path(words[words.index("-F") + 1][len("image=@"):]).is_file()
    # the text search example searches for the store's own words ("red dress" found nothing among films)
    assert query == "Item a1" and "/v1/search/text?q=Item+a1&k=5" in out and "red+dress" not in out


def test_without_an_image_the_placeholder_fails_out_loud(capsys: pytest.CaptureFixture[str]) -> None:
    _banner("127.0.0.1", 8123, False, "user-7", "item-9", None)
    words = _image_line(capsys.readouterr().out)
    assert "image=@photo.jpg" in words and "-sS" in words  # -S: curl says it cannot read the file
