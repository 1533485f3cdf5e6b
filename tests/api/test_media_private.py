"""The data directory's own files are never media: an item image naming the store's database (opening and closing
it in the server drops SQLite's POSIX locks, and another process may then delete the WAL under it), its side files,
the keys or derived files is refused when written, never served and never opened by the encoders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from recsys.api.testing import FakeRecommender
from recsys.config import Settings
from recsys.encoders.media import MediaError, MediaFinder, MediaLimits, load_media
from recsys.store import Store
from recsys.store.media_roots import PRIVATE_REASON, media_roots, private, relocated, under_roots


def _png(path: Path) -> Path:
    """A real picture at ``path``: were it not refused, it would be served and decoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(path, format="PNG")
    return path


def _private_files(home: Path) -> list[Path]:
    return [_png(home / name) for name in ("recsys.db", "recsys.db-wal", "recsys.db-shm", "recsys.db-journal")] + [
        _png(home / d / "x.png")
        for d in ("secrets", "index", "encoders", "rankers", "cache", "vectors", "onnx", "reports")]


def test_the_predicate_refuses_the_store_and_derived_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home)
    files = _private_files(home)
    picture = _png(home / "demo-data" / "a.png")
    roots = media_roots(settings)
    assert under_roots(picture, roots) and not private(picture, roots)
    for f in files:
        assert private(f, roots) and not under_roots(f, roots), f
        assert not under_roots(home / "demo-data" / ".." / f.relative_to(home), roots)
        assert relocated(Path("/elsewhere") / f.relative_to(home), home, roots) is None
    link = home / "demo-data" / "db.png"
    link.symlink_to(home / "recsys.db")
    hard = home / "demo-data" / "hard.png"
    hard.hardlink_to(home / "recsys.db")
    assert not under_roots(link, roots) and not under_roots(hard, roots)


def test_a_sqlite_url_elsewhere_is_protected_too(tmp_path: Path) -> None:
    db = _png(tmp_path / "media" / "store.sqlite")
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{db}")
    settings.api = settings.api.model_copy(update={"media_roots": [tmp_path / "media"]})
    roots = media_roots(settings)
    assert not under_roots(db, roots) and under_roots(_png(tmp_path / "media" / "a.png"), roots)


def test_the_encoders_never_open_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    files = _private_files(home)
    find = MediaFinder.of(Settings(home=home))
    opened: list[str] = []
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        opened.append(str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    for f in files:
        for uri in (str(f), f"file://{f}"):
            with pytest.raises(MediaError) as e:
                load_media(find(uri), "image", MediaLimits())
            assert str(e.value) == PRIVATE_REASON
    assert opened == []
    assert len(load_media(find(str(_png(home / "demo-data" / "a.png"))), "image", MediaLimits())) == 1


def test_the_api_refuses_and_never_serves_them(sqlite_store: Store, tmp_path: Path,
                                               make_client: Callable[..., TestClient]) -> None:
    home = tmp_path / "home"  # the data directory of conftest.api_settings
    files = _private_files(home)
    fake = FakeRecommender(sqlite_store, [
        {"item_id": f"p{i}", "title": "x", "media": [{"kind": "image", "uri": str(f), "status": "ok", "error": None}]}
        for i, f in enumerate(files)])
    client = make_client(fake)
    for i, f in enumerate(files):
        r = client.put("/v1/items/new", json={"title": "new", "image": str(f)})
        assert r.status_code == 422 and "not media" in r.json()["error"]["message"], (f, r.text)
        assert client.get(f"/media/p{i}").status_code == 404, f
    assert client.get("/v1/items/new").status_code == 404
