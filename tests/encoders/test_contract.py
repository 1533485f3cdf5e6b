"""One contract suite over every preset kind: recsys-lite (real local towers) and a tiny local open_clip checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recsys.config import Settings
from recsys.encoders import Encoder, get_encoder, get_preset, list_presets
from recsys.errors import ModelUnavailable, UnknownPreset
from tests.encoders.fixtures import COLOURS, tiny_open_clip_preset


@pytest.fixture(params=["recsys-lite", "tiny-local"])
def encoder(request: pytest.FixtureRequest, enc_settings: Settings, tmp_path: Path) -> Encoder:
    name = request.param
    if name == "tiny-local":
        tiny_open_clip_preset(enc_settings, tmp_path / "ckpt")
    return get_encoder(enc_settings, preset=name)


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (60, 90), c) for c in list(COLOURS.values())[:3]]


def test_contract_shapes_norms_dtype(encoder: Encoder) -> None:
    assert isinstance(encoder, Encoder)
    assert isinstance(encoder.id, str) and encoder.id
    t = encoder.encode_texts(["a red dress", "black trousers", "x"])
    i = encoder.encode_images(_images())
    for arr, n in ((t, 3), (i, 3)):
        assert arr.shape == (n, encoder.dim) and arr.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-4)
    assert encoder.encode_texts([]).shape == (0, encoder.dim)
    assert encoder.encode_images([]).shape == (0, encoder.dim)


def test_contract_deterministic_and_batch_independent(encoder: Encoder) -> None:
    texts = ["a red dress", "black trousers with a long description " * 5]
    a = encoder.encode_texts(texts)
    b = np.concatenate([encoder.encode_texts([x]) for x in texts])
    np.testing.assert_allclose(a, b, atol=1e-4)
    imgs = _images()
    np.testing.assert_allclose(encoder.encode_images(imgs)[:1], encoder.encode_images(imgs[:1]), atol=1e-4)


def test_unknown_preset_lists_valid_ones(enc_settings: Settings) -> None:
    with pytest.raises(UnknownPreset, match="recsys-lite") as e:
        get_preset("nope", enc_settings)
    assert "RECSYS_ENCODER__PRESET" in e.value.message


def test_builtin_presets_parse() -> None:
    names = {p.name for p in list_presets()}
    assert {"recsys-lite", "ViT-B-32-laion"} <= names


def test_offline_hub_preset_fails_fast_naming_setting(enc_settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from recsys.encoders import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to load offline
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="RECSYS_ENCODER__PRESET"):
        get_encoder(enc_settings, preset="ViT-B-32-laion")
    assert time.perf_counter() - t0 >= 0  # returns (no hang); the point is that we get here


def test_missing_local_checkpoint(enc_settings: Settings, tmp_path: Path) -> None:
    name = tiny_open_clip_preset(enc_settings, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "tiny.pt").unlink()
    with pytest.raises(ModelUnavailable, match="not found"):
        get_encoder(enc_settings, preset=name)


def test_a_preset_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    from recsys.errors import ConfigError

    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "mine.json").write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))  # broke every encoder command
    with pytest.raises(ConfigError, match="mine.json is invalid"):
        list_presets(Settings(home=tmp_path))
