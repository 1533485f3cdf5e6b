"""Item images live under the media roots: an admin key cannot point an item at any other file, a recorded one
outside them is never served, and readers see media URLs, never the server's paths nor whether a file exists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from recsys.api.testing import FakeRecommender
from recsys.store import Store


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(path, format="PNG")
    return path


def _media(uri: Path | str, status: str = "ok", error: str | None = None) -> list[dict[str, object]]:
    return [{"kind": "image", "uri": str(uri), "status": status, "error": error}]


def test_images_only_from_the_media_roots(sqlite_store: Store, tmp_path: Path,
                                          make_client: Callable[..., TestClient]) -> None:
    root = tmp_path / "media"
    inside = _png(root / "a.png")
    secret = _png(tmp_path / "private" / "key.png")  # a real image, but not under any media root
    fake = FakeRecommender(sqlite_store, [
        {"item_id": "ok", "title": "ok", "media": _media(inside)},
        {"item_id": "outside", "title": "x", "media": _media(secret)},
        {"item_id": "gone", "title": "x", "media": _media(tmp_path / "private" / "nothing.png")},
        {"item_id": "broken", "title": "x",
         "media": _media(secret, "error", f"file not found: {tmp_path / 'private' / 'key.png'}")},
    ])
    bmp = root / "b.bmp"
    Image.new("RGB", (8, 8), "blue").save(bmp, format="BMP")
    fake.items["bmp"] = {"item_id": "bmp", "title": "bmp", "media": _media(bmp)}
    client = make_client(fake, media_roots=[root])
    assert client.get("/media/ok").headers["content-type"] == "image/png"
    assert client.get("/media/bmp").headers["content-type"] == "image/bmp"  # embedded, so shown too
    outside, gone = client.get("/media/outside"), client.get("/media/gone")
    assert outside.status_code == gone.status_code == 404
    assert outside.text.replace("outside", "ID") == gone.text.replace("gone", "ID")  # existence is not told
    for item in ("ok", "outside", "broken"):
        body = client.get(f"/v1/items/{item}").text + client.get(f"/items/{item}").text
        assert str(tmp_path) not in body and "not found" not in body, body
    assert client.get("/v1/items/ok").json()["media"][0]["uri"] == "/media/ok?n=0"

    # Writes: a local image outside the roots is refused with a clear error and nothing is stored.
    for image in (str(secret), f"file://{secret}", "../private/key.png", f"{inside}|{secret}", "ftp://h/x.png"):
        r = client.put("/v1/items/new", json={"title": "new", "image": image})
        assert r.status_code == 422 and "image" in r.json()["error"]["message"], (image, r.text)
        assert client.get("/v1/items/new").status_code == 404
    assert client.put("/v1/items/new", json={"title": "new", "image": str(inside)}).status_code == 200
    assert client.put("/v1/items/web", json={"title": "w", "image": "https://example.org/a.jpg"}).status_code == 200
    batch = client.post("/v1/items", json={"items": [{"item_id": "b1", "image": str(secret)},
                                                     {"item_id": "b2", "image": str(inside)}]}).json()
    assert [r["status"] for r in batch["results"]] == ["error", "stored"]
    assert client.get("/v1/items/b1").status_code == 404 and client.get("/v1/items/b2").status_code == 200


def test_a_moved_or_copied_home_serves_its_own_pictures(sqlite_store: Store, tmp_path: Path,
                                                        make_client: Callable[..., TestClient]) -> None:
    """Imports record absolute paths: a home copied or moved since (``cp -a demo-home home``) serves the pictures
    under its own data directory, and still nothing outside the media roots (no ``..``, no link out of the home)."""
    import shutil

    old = tmp_path / "old-home"
    picture = _png(old / "demo-data" / "images" / "00001.png")
    secret = _png(tmp_path / "private" / "key.png")
    (old / "demo-data" / "images" / "link.png").symlink_to(secret)
    _png(old / "00002.png")  # a bare file name at the top of the home is too loose a match
    fake = FakeRecommender(sqlite_store, [
        {"item_id": "moved", "title": "m", "media": _media(picture)},
        {"item_id": "link", "title": "l", "media": _media(old / "demo-data" / "images" / "link.png")},
        {"item_id": "up", "title": "u", "media": _media(f"{old}/demo-data/../../private/key.png")},
        {"item_id": "outside", "title": "o", "media": _media(secret)},
        {"item_id": "bare", "title": "b", "media": _media(tmp_path / "elsewhere" / "00002.png")},
    ])
    shutil.copytree(old, tmp_path / "home", symlinks=True)  # the client's data directory (api_settings)
    client = make_client(fake, media_roots=[])
    for _ in ("copied", "moved"):  # the original still there, then gone
        r = client.get("/media/moved")
        assert r.status_code == 200 and r.content == (tmp_path / "home" / "demo-data/images/00001.png").read_bytes()
        for item in ("link", "up", "outside", "bare"):
            assert client.get(f"/media/{item}").status_code == 404, item
        shutil.rmtree(old)
        old.mkdir()
