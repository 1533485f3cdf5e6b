"""The Ray Data engine writes the same vectors as the local engine (Ray local, 2 CPUs)."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from recsys.config import Settings
from recsys.demo import tiny_demo
from recsys.encoders import embed_catalog, load_item_vectors
from recsys.errors import ConfigError, EncoderError
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
    # the broken medium is tried again (and said again); still broken, its item keeps its cached vector
    assert (again.encoded, again.cached, again.broken_media) == (0, local.items, 1)


class _WorkerError(ray.exceptions.RayError):
    """What the driver gets from a failed Ray task: the worker's traceback as text, wrapped in Ray's own lines."""


class _InProcessDataset:
    """``ray.data`` as far as the engine uses it, run in this process: batches through the callable class, and a
    failure reported the way Ray reports it (no exception object, a traceback text)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def map_batches(self, cls: Any, *, fn_constructor_kwargs: dict[str, Any], batch_size: int,
                    **_: Any) -> _InProcessDataset:
        self.fn, self.batch_size = cls(**fn_constructor_kwargs), batch_size
        return self

    def iter_batches(self, **_: Any) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.rows), self.batch_size):
            chunk = self.rows[i : i + self.batch_size]
            batch = {"row": np.array([r["row"] for r in chunk]),
                     "record": np.array([r["record"] for r in chunk], dtype=object)}
            try:
                yield self.fn(batch)
            except Exception as e:
                text = "".join(traceback.format_exception(e))
                raise _WorkerError(f"\x1b[36mray::MapWorker(MapBatches(ItemEmbedder)).submit()\x1b[39m (pid=1)\n{text}"
                                   "\nray.exceptions.UserCodeException: UDF failed to process a data block.") from None


def _fake_ray(gpus: float = 0) -> Any:
    return SimpleNamespace(cluster_resources=lambda: {"CPU": 2.0, **({"GPU": gpus} if gpus else {})},
                           data=SimpleNamespace(from_items=_InProcessDataset, ActorPoolStrategy=lambda size: size),
                           exceptions=ray.exceptions)


def test_cuda_on_a_cluster_without_gpus_is_refused_not_waited_for(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.encoders import ray_engine
    from recsys.encoders.ray_engine import embed_catalog_ray, pool_size

    settings, store = _home(tmp_path, "gpu", tiny_demo(tmp_path), tmp_path / "ckpt")
    settings.encoder.device = "cuda"
    monkeypatch.setattr(ray_engine, "_ensure_ray", lambda address: _fake_ray(gpus=0))
    with pytest.raises(ConfigError, match="RECSYS_ENCODER__DEVICE is 'cuda' but the Ray cluster has no GPU.*cpu"):
        embed_catalog_ray(store, settings, workers=2)
    assert pool_size(_fake_ray(gpus=1), settings, 4) == 1  # one actor per GPU: a fifth would wait for ever too
    settings.encoder.device = "cpu"
    assert pool_size(_fake_ray(gpus=0), settings, 4) == 4


def test_a_failing_worker_names_its_cause_and_a_rerun_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.encoders import embed as embed_mod
    from recsys.encoders import ray_engine
    from recsys.encoders.ray_engine import embed_catalog_ray

    settings, store = _home(tmp_path, "fail", tiny_demo(tmp_path), tmp_path / "ckpt")
    monkeypatch.setattr(ray_engine, "_ensure_ray", lambda address: _fake_ray())
    real = embed_mod.encode_items
    calls: list[int] = []

    def oom_on_the_third_batch(encoder: Any, items: Any, s: Any, progress: Any = None) -> Any:
        calls.append(len(items))
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(encoder, items, s, progress)

    monkeypatch.setattr(embed_mod, "encode_items", oom_on_the_third_batch)
    with pytest.raises(EncoderError, match=r"a Ray worker failed on a batch \(items item-00021, .* and 7 more: "
                                           r"RuntimeError: CUDA out of memory.*\); the 20 of 60 items .* cached: "
                                           "rerun") as got:
        embed_catalog_ray(store, settings, batch_size=10)
    assert "\x1b[" not in got.value.message and "UDF failed" not in got.value.message
    monkeypatch.setattr(embed_mod, "encode_items", real)
    again = embed_catalog_ray(store, settings, batch_size=10)
    assert (again.encoded, again.cached) == (40, 20)


@pytest.mark.slow
def test_a_real_ray_worker_failure_is_an_encoder_error(tmp_path: Path, ray_local: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.encoders import ray_engine

    settings, store = _home(tmp_path, "real", tiny_demo(tmp_path), tmp_path / "ckpt")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    monkeypatch.setattr(ray_engine, "ItemEmbedder", _FailingEmbedder)
    with pytest.raises(EncoderError, match=r"a Ray worker failed on a batch \(RuntimeError: a node was lost\); the "
                                           r"\d+ of 60 items"):
        ray_engine.embed_catalog_ray(store, settings, workers=1, batch_size=25)


class _FailingEmbedder:
    def __init__(self, settings: Settings) -> None:
        from recsys.encoders.ray_engine import ItemEmbedder

        self.inner = ItemEmbedder(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if int(np.max(batch["row"])) >= 30:
            raise RuntimeError("a node was lost")
        return self.inner(batch)
