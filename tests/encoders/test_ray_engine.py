"""The Ray Data engine writes the same vectors as the local engine (Ray local, 2 CPUs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recsys.config import Settings
from recsys.demo import tiny_demo
from recsys.encoders import embed_catalog, load_item_vectors
from recsys.store import Store
from recsys.store.importers import run_import
from tests.encoders.fixtures import broken_media, tiny_open_clip_preset

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'recsys[ray]')")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'recsys[ray]')")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    if started:
        ray.shutdown()


def _home(tmp_path: Path, name: str, demo: Path, ckpt: Path) -> tuple[Settings, Store]:
    s = Settings(home=tmp_path / name, database_url=f"sqlite:///{tmp_path / (name + '.db')}")
    s.encoder.batch_size = 8
    s.encoder.num_workers = 0
    s.encoder.device = "cpu"
    s.encoder.preset = tiny_open_clip_preset(s, ckpt)
    store = Store(s.db_url)
    store.upgrade()
    run_import(store, "items", demo / "items.jsonl", settings=s)
    return s, store


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    return np.where(both_zero, 1.0, cos)


def test_ray_engine_matches_local(tmp_path: Path, ray_local: None) -> None:
    from recsys.encoders.ray_engine import embed_catalog_ray

    demo = tiny_demo(tmp_path)
    # One item with a broken image, so media errors are recorded by both engines.
    broken_media(tmp_path / "bad")
    lines = (demo / "items.jsonl").read_text().splitlines()
    extra = {**json.loads(lines[0]), "item_id": "zz-broken", "title": "item with a truncated image",
             "image": str(tmp_path / "bad" / "truncated.jpg")}
    (demo / "items.jsonl").write_text("\n".join([*lines, json.dumps(extra)]) + "\n")

    local_s, local_store = _home(tmp_path, "local", demo, tmp_path / "ckpt")
    ray_s, ray_store = _home(tmp_path, "ray", demo, tmp_path / "ckpt")

    local = embed_catalog(local_store, local_s)
    remote = embed_catalog_ray(ray_store, ray_s, workers=2, batch_size=16)
    assert (remote.items, remote.encoded, remote.with_image, remote.broken_media) == \
        (local.items, local.encoded, local.with_image, local.broken_media)
    assert remote.encoder_id == local.encoder_id and remote.errors.keys() == local.errors.keys()
    assert local.with_image > 0 and local.broken_media == 1 and "zz-broken" in remote.errors

    lv, rv = load_item_vectors(local_s, local_store), load_item_vectors(ray_s, ray_store)
    assert lv.item_ids == rv.item_ids and len(lv) == local.items
    assert lv.has_image.tolist() == rv.has_image.tolist() and lv.content_hash == rv.content_hash
    for name in ("text", "image", "fused"):
        cos = _cos(getattr(lv, name), getattr(rv, name))
        assert cos.min() >= 0.999, (name, float(cos.min()))
    from recsys.encoders.vectors import load_tower_text

    # the ranker's content space: the Ray snapshot lacked it, and the served ranker fell back to the fused vectors
    lt, rt = load_tower_text(local_s, lv.encoder_id, lv.item_ids), load_tower_text(ray_s, rv.encoder_id, rv.item_ids)
    assert lt is not None and rt is not None and _cos(lt, rt).min() >= 0.999

    again = embed_catalog_ray(ray_store, ray_s, workers=2)
    assert (again.encoded, again.cached) == (0, local.items)
