"""ONNX Runtime towers: same features as torch (1e-4), exported once and reused, a corrupt export redone, the
``encoder.runtime`` setting honoured and runtimes that differ kept apart in the feature caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recsys.config import Settings
from recsys.encoders.encoder import get_encoder, load_towers
from recsys.encoders.features import feature_caches
from recsys.encoders.onnx_runtime import OnnxTowers, resolve_runtime
from recsys.encoders.registry import get_preset
from recsys.errors import ConfigError

pytest.importorskip("onnxruntime")

TEXTS = ["black cotton dress with long sleeves", "red", "Relaxed-fit trousers in woven fabric with a high waist, "
         "zip fly and concealed hook-and-eye fastener", "striped t-shirt"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    for colour in ((250, 250, 250), (20, 30, 200), (200, 40, 40)):
        a = np.full((260, 200, 3), colour, np.uint8)
        a[60:200, 50:150] = rng.integers(0, 255, 3, dtype=np.uint8)  # a garment on a plain background
        a[100:120] = rng.integers(0, 255, (20, 200, 3), dtype=np.uint8)
        out.append(Image.fromarray(a))
    return out


@pytest.fixture(scope="module")
def onnx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-home")


@pytest.fixture(scope="module")
def both(onnx_home: Path) -> tuple[object, OnnxTowers]:
    preset = get_preset("recsys-lite")
    torch_towers = load_towers(preset, "cpu", "torch")
    return torch_towers, OnnxTowers(torch_towers, onnx_home / "onnx", "onnx")


def test_features_match_torch(both: tuple[object, OnnxTowers]) -> None:
    base, onnx = both
    batch = torch.stack([onnx.preprocess(im) for im in _images()])
    ti = base.image_features(batch).numpy()  # type: ignore[attr-defined]
    oi = onnx.image_features(batch).numpy()
    assert oi.shape == ti.shape == (3, onnx.image_dim)
    assert np.abs(oi - ti).max() < 1e-4
    tt = base.text_features(TEXTS).numpy()  # type: ignore[attr-defined]
    ot = onnx.text_features(TEXTS).numpy()
    assert ot.shape == tt.shape == (len(TEXTS), onnx.text_dim)
    assert np.abs(ot - tt).max() < 1e-4
    # One text alone (different padding) gives the same features as in a batch.
    assert np.abs(onnx.text_features(TEXTS[1:2]).numpy() - tt[1:2]).max() < 1e-4
    assert onnx.id == base.id  # type: ignore[attr-defined]  # equal within tolerance: caches and heads are shared


def test_export_reused_and_corrupt_export_redone(both: tuple[object, OnnxTowers]) -> None:
    base, onnx = both
    image = onnx.directory / "image.onnx"
    mtime = image.stat().st_mtime_ns
    again = OnnxTowers(base, onnx.directory.parent, "onnx")
    assert image.stat().st_mtime_ns == mtime  # reused, not exported again
    with image.open("r+b") as f:  # a torn write: the file no longer matches its manifest
        f.seek(1000)
        f.write(b"\x00" * 64)
    redone = OnnxTowers(base, onnx.directory.parent, "onnx")
    assert image.stat().st_mtime_ns != mtime
    batch = torch.stack([onnx.preprocess(im) for im in _images()[:1]])
    assert np.abs(redone.image_features(batch).numpy() - again.image_features(batch).numpy()).max() < 1e-5


def test_runtime_setting_honoured(onnx_home: Path) -> None:
    s = Settings(home=onnx_home)
    s.encoder.device = "cpu"
    s.encoder.runtime = "torch"
    assert type(get_encoder(s, fitted=False).towers).__name__ == "LiteTowers"
    for runtime in ("onnx", "auto"):
        s.encoder.runtime = runtime  # type: ignore[assignment]
        towers = get_encoder(s, fitted=False).towers
        assert isinstance(towers, OnnxTowers) and towers.runtime == "onnx"
    assert resolve_runtime("auto", torch.device("cuda")) == "torch"
    assert resolve_runtime("auto", torch.device("cpu"), "open_clip") == "torch"
    with pytest.raises(ConfigError):
        resolve_runtime("onnx", torch.device("cuda"))


def test_int8_is_kept_apart(both: tuple[object, OnnxTowers], onnx_home: Path) -> None:
    base, onnx = both
    int8 = OnnxTowers(base, onnx.directory.parent, "onnx-int8")
    assert int8.id != onnx.id
    t = base.text_features(TEXTS).numpy()  # type: ignore[attr-defined]
    q = int8.text_features(TEXTS).numpy()
    cos = (t * q).sum(1) / np.linalg.norm(t, axis=1) / np.linalg.norm(q, axis=1)
    assert cos.min() > 0.85
    s = Settings(home=onnx_home)
    assert feature_caches(s, int8)[1].path != feature_caches(s, onnx)[1].path


def test_auto_falls_back_to_torch_when_export_fails(both: tuple[object, OnnxTowers],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.encoders.encoder as encoder_module
    import recsys.encoders.onnx_runtime as onnx_module

    base, _ = both
    preset = get_preset("recsys-lite")
    monkeypatch.setattr(encoder_module, "_TOWERS", {(preset.model_dump_json(), "cpu", "torch"): base})

    def broken(*args: object, **kwargs: object) -> OnnxTowers:
        raise RuntimeError("exporter cannot trace this model")

    monkeypatch.setattr(onnx_module, "OnnxTowers", broken)
    with pytest.raises(RuntimeError):
        load_towers(preset, "cpu", "onnx")
    assert load_towers(preset, "cpu", "auto") is base
