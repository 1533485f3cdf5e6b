"""A remote image keeps its address in the API whatever its status, and file:// URLs are percent-decoded."""

from __future__ import annotations

from pathlib import Path

from recsys.api.media import UNREADABLE, local_path, public_item


def test_a_remote_image_keeps_its_address_even_after_a_failed_embed() -> None:
    details = {"item_id": "r", "media": [
        {"kind": "image", "uri": "https://example.com/a.jpg", "status": "error", "error": "remote ..."},
        {"kind": "image", "uri": "/data/b.png", "status": "ok", "error": None},
        {"kind": "image", "uri": "/data/c.png", "status": "error", "error": "not an image"},
    ]}
    media = public_item(details)["media"]
    assert media[0]["uri"] == "https://example.com/a.jpg"
    assert media[1]["uri"] == "/media/r?n=0"  # numbered as /media numbers the shown ones
    assert media[2] == {"kind": "image", "status": "error", "uri": None, "error": UNREADABLE}


def test_file_urls_are_percent_decoded() -> None:
    assert local_path("file:///photos/file%20url%20%C3%A9.png") == Path("/photos/file url é.png")
