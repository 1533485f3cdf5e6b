"""Encoder audit fixes: the served index after a change of towers names `recsys build`; an ONNX export that cannot be
written (read-only, full disk) is one error and leaves no partial file; an onnxruntime that fails to import counts
as missing; a checkpoint that is not one says so; over-long tag labels and facet names are refused, never cut."""

from __future__ import annotations

import errno
import importlib.abc
import importlib.machinery
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

from recsys.config import Settings
from recsys.encoders import fit_encoder, get_preset
from recsys.encoders.encoder import encoder_for
from recsys.encoders.training import FitParams
from recsys.errors import EncoderStorageError, IncompatibleArtifact, ModelUnavailable, ValidationFailed
from recsys.store import Store
from tests.encoders.fixtures import TINY_CFG, colour_catalogue


def _replace_checkpoint(settings: Settings, seed: int) -> None:
    """A retrained checkpoint written over the same path: other weights, so other towers."""
    from open_clip.model import CLIP

    checkpoint = get_preset(settings.encoder.preset, settings).checkpoint
    assert checkpoint
    torch.manual_seed(seed)
    torch.save(CLIP(**TINY_CFG).state_dict(), checkpoint)  # type: ignore[arg-type]


def test_served_heads_of_other_towers_name_recsys_build(store: Store, tiny: Settings, tmp_path: Path) -> None:
    colour_catalogue(store, tmp_path / "img", per_colour=1)
    params = FitParams(epochs=1, batch_size=8, val_pairs=0)
    served = fit_encoder(store, tiny, params=params).encoder_id  # the heads the served index was built with
    _replace_checkpoint(tiny, seed=3)
    with pytest.raises(IncompatibleArtifact) as none_yet:
        encoder_for(tiny, served)
    message = str(none_yet.value)
    assert served in message and "no heads are fitted for these towers yet: run `recsys build`" in message
    refit = fit_encoder(store, tiny, params=params)  # what the heads' own refusal asks for: not enough alone
    with pytest.raises(IncompatibleArtifact) as stale:
        encoder_for(tiny, served)
    message = str(stale.value)
    assert f"current heads {refit.encoder_id} fit these towers" in message
    assert "run `recsys build` (or `recsys embed`, then `recsys index build`)" in message
    assert "encoder fit` again" not in message
    assert encoder_for(tiny, refit.encoder_id).id == refit.encoder_id  # an index of the new heads is served


class _FakeLiteTowers:
    """Just enough of LiteTowers for OnnxTowers to start an export of its image model."""

    id, image_dim, text_dim, context_length, channels_last = "fake-towers", 4, 4, 8, False

    def __init__(self) -> None:
        self.image_model = nn.Sequential(nn.Conv2d(3, 4, 16, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def preprocess(self, image: Any) -> torch.Tensor:
        return torch.zeros(3, 224, 224)


def test_a_read_only_onnx_folder_is_one_error_and_auto_falls_back(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    import recsys.encoders.encoder as encoder_module
    import recsys.encoders.onnx_runtime as onnx_module

    preset, base = get_preset("recsys-lite"), _FakeLiteTowers()
    monkeypatch.setattr(encoder_module, "_TOWERS", {(preset.model_dump_json(), "cpu", "torch"): base})

    def read_only(module: nn.Module, args: Any, tmp: Path, *a: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp))

    monkeypatch.setattr(onnx_module, "_export", read_only)
    folder = tmp_path / "onnx" / "fake-towers"
    with pytest.raises(EncoderStorageError, match=re.escape(str(folder)) + r" \(Permission denied.*make RECSYS_HOME "
                                                  "writable.*or set RECSYS_ENCODER__RUNTIME=torch"):
        encoder_module.load_towers(preset, "cpu", "onnx", tmp_path)
    assert encoder_module.load_towers(preset, "cpu", "auto", tmp_path) is base  # auto promised only speed


def test_a_full_disk_during_the_export_leaves_no_partial_file(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from recsys.encoders.onnx_runtime import OnnxTowers

    folder = tmp_path / "onnx" / "fake-towers"
    folder.mkdir(parents=True)
    (folder / "text.onnx.99999999").write_bytes(b"\0" * 64)  # left by a process killed mid-export

    def full(module: nn.Module, args: Any, f: str, **kw: Any) -> None:
        Path(f).write_bytes(b"\0" * 4096)  # part of the model written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full)
    with pytest.raises(EncoderStorageError, match=r"No space left on device.*partial files were removed: free space"):
        OnnxTowers(_FakeLiteTowers(), tmp_path / "onnx", "onnx")
    assert sorted(p.name for p in folder.iterdir()) == [".export.lock"]


class _BrokenOnnxruntime(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """onnxruntime installed, but its import fails (a missing shared library, the wrong glibc)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(name, self) if name == "onnxruntime" else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        raise ImportError("libonnxruntime.so.1: cannot open shared object file: No such file or directory")


def test_an_onnxruntime_that_fails_to_import_counts_as_missing(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from recsys.encoders.onnx_runtime import resolve_runtime

    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenOnnxruntime(), *sys.meta_path])
    with pytest.raises(ModelUnavailable, match=r"RECSYS_ENCODER__RUNTIME=onnx needs onnxruntime, which is installed, "
                                               r"but it fails to import \(ImportError: libonnxruntime\.so\.1.*"
                                               "RECSYS_ENCODER__RUNTIME=torch"):
        resolve_runtime("onnx", torch.device("cpu"))
    assert resolve_runtime("auto", torch.device("cpu")) == "torch"


@pytest.mark.parametrize(("content", "why"), [
    (bytes(range(256)) * 64, "not a pickle of tensors"),
    (b"not a checkpoint, only text\n", "not a pickle of tensors"),
    (b"", "the file is empty"),
    (None, "it holds a Tensor, not a dict of tensors"),
])
def test_a_checkpoint_that_is_not_one_says_so(tiny: Settings, content: bytes | None, why: str) -> None:
    from recsys.encoders.hub import load_open_clip

    preset = get_preset(tiny.encoder.preset, tiny)
    assert preset.checkpoint
    if content is None:
        torch.save(torch.zeros(3), preset.checkpoint)
    else:
        Path(preset.checkpoint).write_bytes(content)
    with pytest.raises(ModelUnavailable) as got:
        load_open_clip(preset)
    message = str(got.value)
    assert f"the checkpoint file {preset.checkpoint} is not an open_clip/PyTorch checkpoint ({why}" in message
    assert "torch.save(model.state_dict())" in message and "(None /" not in message
    assert "weights_only" not in message and "file an issue" not in message


def test_over_long_tag_labels_and_facet_names_are_refused(tmp_path: Path, store: Store,
                                                          enc_settings: Settings) -> None:
    from recsys.encoders.tagging import read_vocabulary, tag_items

    long = "a garment in a long descriptive style " * 6
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"style": [long + "with buttons", long + "with a zip", "plain"]}))
    with pytest.raises(ValidationFailed, match=r"facet 'style': label 'a garment.*\.\.\.' has 240 characters; "
                                               "`items tag` stores labels of at most 200: shorten it"):
        read_vocabulary(labels)
    facets = tmp_path / "facets.txt"
    facets.write_text(f"{'f' * 100}_colour: red, blue\n{'f' * 100}_type: dress, trousers\n")
    with pytest.raises(ValidationFailed, match="facet name 'f+\\.\\.\\.' has 107 characters; `items tag` stores facet "
                                               "names of at most 100"):
        read_vocabulary(facets)
    with pytest.raises(ValidationFailed, match="label .* has 240 characters"):  # given as a dict, not a file
        tag_items(store, enc_settings, {"style": [long + "with buttons", "plain"]})
