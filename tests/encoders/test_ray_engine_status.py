"""The Ray engine records what the local engine records (media status per use of a file, the outside-the-media-roots
note), a worker's missing install or unshared RECSYS_HOME is said as such, ``--ray-address`` takes the forms Ray takes,
and a successful run prints no Ray log lines (audit "ray" D1-D5). The address and message tests need no Ray; the
others share one local Ray, started by the engine itself in a temp dir of their own."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import socket
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.encoders import ray_engine
from recsys.errors import ConfigError, EncoderError
from recsys.store import Item, ItemMedia, Store
from tests.encoders.fixtures import COLOURS, add_item, broken_media, garment, tiny_open_clip_preset, tiny_video

# -- --ray-address: the forms Ray takes, refused at once otherwise (no Ray needed) ----------------------------------


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The (host, port) the check connects to (every connection succeeds); ``ray.init`` fails the test."""
    def no_init(**_: Any) -> None:
        raise AssertionError("ray.init must not be called by the address check")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False, init=no_init))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # Ray and its client installed
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.60.0")
    seen: list[tuple[str, int]] = []

    def connect(addr: tuple[str, int], timeout: float) -> socket.socket:
        seen.append(addr)
        return socket.socket()

    monkeypatch.setattr(socket, "create_connection", connect)
    return seen


def test_the_forms_ray_takes_pass(probes: list[tuple[str, int]]) -> None:
    for address in (None, "auto", "local", "127.0.0.1:6379", "head.example:6380", "[::1]:6379", "ray://head:10001"):
        ray_engine.check_address(address)
    assert probes == [("127.0.0.1", 6379), ("head.example", 6380), ("::1", 6379), ("head", 10001)]


def test_an_http_address_is_said_to_be_the_dashboards(probes: list[tuple[str, int]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as e:
        ray_engine.check_address("http://127.0.0.1:8265")
    msg = e.value.message
    assert msg.startswith("--ray-address http://127.0.0.1:8265 is an HTTP address (the Ray dashboard's")
    assert "not the cluster's" in msg and "HOST:PORT" in msg and "ray://HOST:PORT" in msg
    assert "is not installed" not in msg and "pip install" not in msg
    monkeypatch.setenv("RAY_ADDRESS", "https://head:8265")
    with pytest.raises(ConfigError, match=r"^RAY_ADDRESS=https://head:8265 is an HTTP address"):
        ray_engine.check_address(None)
    assert probes == []


@pytest.mark.parametrize(("address", "said"), [
    ("127.0.0.1", "has no port"), ("head", "has no port"), ("ray://head", "has no port"),
    ("head:notaport", "is not a Ray address"), ("head:", "is not a Ray address"), ("::1", "is not a Ray address"),
    ("grpc://head:10001", "is not a Ray address"), ("head:6379/x", "is not a Ray address"),
])
def test_anything_else_is_refused_at_once_naming_the_forms(probes: list[tuple[str, int]], address: str,
                                                           said: str) -> None:
    with pytest.raises(ConfigError) as e:
        ray_engine.check_address(address)
    assert e.value.message.startswith(f"--ray-address {address} {said}")
    assert e.value.message.endswith(f"give {ray_engine.FORMS}") and "6379" in ray_engine.FORMS
    assert probes == []  # a bare host was probed on 6379, a port the user never typed, then refused by Ray


# -- a worker that lacks recsys: what to install, not "rerun" ---------------------------------------------------------

RAY_TEXT = ("\x1b[36mray::MapWorker(MapBatches(ItemEmbedder)).__init__()\x1b[39m (pid=7, ip=10.0.0.2)\n"
            "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\n{raised}\n")


def test_a_worker_without_recsys_says_every_node_needs_it_installed() -> None:
    e = ray_engine._worker_failed(RuntimeError(RAY_TEXT.format(raised="ModuleNotFoundError: No module named "
                                                                      "'recsys'")), 0, 300)
    assert isinstance(e, EncoderError)
    assert e.message.startswith("a Ray worker cannot import recsys (ModuleNotFoundError: No module named 'recsys'): "
                                "every Ray node needs recsys installed")
    assert 'pip install -e ".[ray]"' in e.message and "rerunning will not help until then" in e.message
    assert "rerun `recsys embed" not in e.message and "the 0 of 300 items" in e.message
    extra = ray_engine._worker_failed(RuntimeError(RAY_TEXT.format(raised="ModuleNotFoundError: No module named "
                                                                          "'open_clip'")), 64, 300)
    assert extra.message.startswith("a Ray worker cannot import open_clip, which recsys needs, (")
    other = ray_engine._worker_failed(RuntimeError(RAY_TEXT.format(raised="RuntimeError: a node was lost")), 64, 300)
    assert "rerun `recsys embed --engine ray` to resume" in other.message  # a transient failure: a rerun resumes


# -- one local Ray for the rest ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_dir() -> Iterator[Path]:
    """A temp dir of this module's own for the Ray the engine starts (never another Ray's), shut down at the end."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'recsys[ray]')")
    pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'recsys[ray]')")
    d = Path(tempfile.mkdtemp(prefix="recsys-ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    started = not ray.is_initialized()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TMPDIR", str(d))
        mp.delenv("RAY_ADDRESS", raising=False)
        yield d
        if started:
            ray.shutdown()
    shutil.rmtree(d, ignore_errors=True)


def _home(tmp_path: Path, name: str, media: Path) -> tuple[Settings, Store]:
    s = Settings(home=tmp_path / name, database_url=f"sqlite:///{tmp_path / (name + '.db')}")
    s.encoder.batch_size = 8
    s.encoder.num_workers = 0
    s.encoder.device = "cpu"
    s.encoder.preset = tiny_open_clip_preset(s, tmp_path / "ckpt")
    s.api.media_roots = [media]
    store = Store(s.db_url)
    store.upgrade()
    return s, store


def _catalogue(tmp_path: Path) -> list[tuple[str, str, list[tuple[str, Path]]]]:
    media, elsewhere = tmp_path / "media", tmp_path / "elsewhere"
    elsewhere.mkdir(parents=True)
    bad = broken_media(media)
    clip = tiny_video(media / "clip.mp4")
    return [("photo", "red box", [("image", garment(media / "red.jpg", COLOURS["red"]))]),
            ("vid", "an item with a video", [("video", clip)]),
            ("clip-as-image", "the same file as an image", [("image", clip)]),
            ("broken", "a truncated photo", [("image", bad["truncated"])]),
            ("missing", "a photo not there", [("image", bad["missing"])]),
            ("outside", "a photo outside the media roots",
             [("image", garment(elsewhere / "blue.png", COLOURS["blue"], fmt="PNG"))])]


def _media(store: Store) -> list[tuple[str, str, str, str, str | None]]:
    with store.session() as s:
        rows = s.execute(select(Item.external_id, ItemMedia.kind, ItemMedia.uri, ItemMedia.status, ItemMedia.error)
                         .join(Item, Item.id == ItemMedia.item_id).order_by(Item.external_id, ItemMedia.position))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_successful_run_prints_no_ray_log_lines(tmp_path: Path, ray_dir: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    settings, store = _home(tmp_path, "quiet", tmp_path / "media")
    for i in range(3):
        add_item(store, f"i{i}", f"red box {i}", media=[("image", garment(tmp_path / f"{i}.jpg", COLOURS["red"]))])
    capfd.readouterr()
    report = ray_engine.embed_catalog_ray(store, settings, workers=2, batch_size=2)  # starts Ray if no test did
    out, err = capfd.readouterr()
    assert report.encoded == 3
    # Ray's INFO lines, Ray Data's progress block, the core worker's ERROR line about actor constructor arguments
    # (Ray's warnings may stay: one for an auth token in ~/.ray; and its one line saying it read RAY_BACKEND_LOG_LEVEL,
    # which stderr is not held back to hide: a crash inside ray.init must still show its last words)
    ray_lines = re.compile(r"^\[[\d-]+ [\d:,]+ [IWEF] \d+ \d+\]|\t(INFO|DEBUG) |core_worker|rogress|Dataset")
    said = [line for line in (out + err).splitlines() if ray_lines.search(line)]
    assert [line for line in said if "Set ray log level from environment variable" not in line] == [], out + err
    assert len(said) <= 1


def test_the_ray_engine_records_what_the_local_engine_records(tmp_path: Path, ray_dir: Path) -> None:
    from recsys.encoders import embed_catalog
    from recsys.encoders.catalog import OUTSIDE_ROOTS

    catalogue = _catalogue(tmp_path)
    homes = {}
    for name in ("local", "ray"):
        settings, store = _home(tmp_path, name, tmp_path / "media")
        for item_id, title, media in catalogue:
            add_item(store, item_id, title, media=media)
        homes[name] = settings, store
    for run in (1, 2):  # the second run retries the failed media: a wrong "ok" there hid a broken image for good
        local = embed_catalog(homes["local"][1], homes["local"][0])
        remote = ray_engine.embed_catalog_ray(homes["ray"][1], homes["ray"][0], workers=2, batch_size=2)
        assert _media(homes["ray"][1]) == _media(homes["local"][1]), run
        assert (remote.encoded, remote.with_image, remote.broken_media, remote.errors) == \
            (local.encoded, local.with_image, local.broken_media, local.errors), run
    by_id = {row[0]: row[3:] for row in _media(homes["ray"][1])}
    assert by_id["vid"] == ("ok", None) and by_id["clip-as-image"][0] == "error"
    assert by_id["outside"] == ("ok", OUTSIDE_ROOTS) and by_id["photo"] == ("ok", None)
    assert sorted(remote.errors) == ["broken", "clip-as-image", "missing"] and remote.encoded == 0


def test_a_worker_with_another_encoder_stops_before_encoding_anything(tmp_path: Path, ray_dir: Path) -> None:
    from recsys.encoders.encoder import get_encoder

    settings, store = _home(tmp_path, "unshared", tmp_path / "media")
    for i in range(6):
        add_item(store, f"i{i}", f"red box {i}", media=[("image", garment(tmp_path / f"{i}.jpg", COLOURS["red"]))])
    driver = get_encoder(settings)
    driver.id = "tiny-local@20260101T000000Z"  # what the driver reads in its RECSYS_HOME, the workers not
    with pytest.raises(ConfigError) as e:
        ray_engine.embed_catalog_ray(store, settings, workers=2, batch_size=2, encoder=driver)
    assert e.value.message.startswith("Ray workers built encoder tiny-local@unfitted, the driver "
                                      "tiny-local@20260101T000000Z: check that RECSYS_HOME is shared by every node")
    assert "rerunning will not help until then (the 0 of 6 items" in e.value.message
    # the actors refused as they started: no batch was encoded (it writes the tower-feature caches)
    assert not (settings.home / "cache" / "features").exists()
