"""The recsys-lite towers on ONNX Runtime: the CPU inference path (``settings.encoder.runtime``).

The same torch modules (:class:`~recsys.encoders.lite.LiteImageFeatures` and MiniLM with its mean pooler) are exported
once per towers id with ``torch.onnx.export`` (opset 17) under ``<home>/onnx/<towers id>/`` and run by an
``InferenceSession`` on all cores. An export is written to a temporary file, checked against the torch forward on a
probe input, and only then renamed into place beside a manifest holding its SHA-256; a file whose digest does not match
(a partial or corrupt write) is exported again, never served. A failed export (a full disk, a read-only RECSYS_HOME)
removes its temporary file and is one :class:`~recsys.errors.EncoderStorageError`. Weights come from the local
packages: nothing downloads.

Runtimes:

- ``onnx``: fp32; features equal torch's within 1e-4 (tests/encoders/test_onnx_runtime.py), so it shares the torch
  towers id, feature caches and fitted heads.
- ``onnx-int8``: the text tower's MatMuls dynamically quantised to int8 (the image tower stays fp32: dynamic int8
  convolutions measured slower than fp32 on this CPU and 0.28 relative error). Its features differ, so it has its own
  towers id, hence its own feature caches and heads (``recsys encoder fit`` again after switching to it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from recsys.errors import ConfigError, EncoderStorageError, ModelUnavailable

log = logging.getLogger(__name__)

OPSET = 17
RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
TOLERANCE = 1e-4
"""Largest absolute feature difference from the torch forward that an fp32 export may show on its probe."""


def onnxruntime_problem() -> str | None:
    """None when onnxruntime imports; else why not: not installed, or installed but failing to import (a missing
    shared library, the wrong glibc), which counts as missing too (it used to pass a ``find_spec`` check, then fail
    with a traceback)."""
    try:
        import onnxruntime  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name == "onnxruntime":
            return "not installed"
        return f"installed, but it fails to import (ModuleNotFoundError: {e})"
    except (ImportError, OSError) as e:
        return f"installed, but it fails to import ({type(e).__name__}: {e})"
    return None


_warned: list[str] = []


def resolve_runtime(setting: str, device: torch.device, preset_kind: str = "lite") -> str:
    """``auto`` -> ``onnx`` on the CPU for recsys-lite when onnxruntime is importable, else ``torch``; an explicit
    ``onnx``/``onnx-int8`` that cannot run is a clear error naming the setting."""
    if setting not in RUNTIMES:
        raise ConfigError(f"unknown encoder runtime {setting!r}; valid: {', '.join(RUNTIMES)}")
    if setting == "auto":
        if device.type != "cpu" or preset_kind != "lite":
            return "torch"
        problem = onnxruntime_problem()
        if problem is not None and problem != "not installed" and problem not in _warned:
            _warned.append(problem)  # once per process: auto promised only speed, torch answers the same
            log.warning("onnxruntime is %s; using torch (RECSYS_ENCODER__RUNTIME=torch hides this)", problem)
        return "onnx" if problem is None else "torch"
    if setting == "torch":
        return setting
    if preset_kind != "lite":
        raise ConfigError(f"RECSYS_ENCODER__RUNTIME={setting} is only available for recsys-lite; use torch")
    if device.type != "cpu":
        raise ConfigError(f"RECSYS_ENCODER__RUNTIME={setting} runs on the CPU; set RECSYS_ENCODER__DEVICE=cpu "
                          "or RECSYS_ENCODER__RUNTIME=torch")
    problem = onnxruntime_problem()
    if problem == "not installed":
        raise ModelUnavailable(f"RECSYS_ENCODER__RUNTIME={setting} needs onnxruntime (pip install 'recsys[onnx]'), "
                               "or set RECSYS_ENCODER__RUNTIME=torch")
    if problem is not None:
        raise ModelUnavailable(f"RECSYS_ENCODER__RUNTIME={setting} needs onnxruntime, which is {problem}; reinstall "
                               "it (pip install --force-reinstall 'recsys[onnx]') on a system it supports, or set "
                               "RECSYS_ENCODER__RUNTIME=torch")
    return setting


def cpu_threads() -> int:
    """Cores this process may use: ONNX Runtime's intra-op pool does best at one thread per core
    (bench/onnx_towers.py measures 1 thread against all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _TextForward(nn.Module):
    """MiniLM + mean pooler as one module: (input_ids, attention_mask) -> (n, 384)."""

    def __init__(self, text: Any) -> None:
        super().__init__()
        self.text = text

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return self.text.pooler(out, attention_mask).float()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _valid(path: Path, towers_id: str) -> bool:
    meta = path.with_suffix(".json")
    try:
        manifest = json.loads(meta.read_text())
        return bool(manifest.get("towers") == towers_id and manifest.get("sha256") == _sha256(path))
    except (OSError, ValueError):
        return False


_TEMPORARY = re.compile(r".+\.(onnx|json)\.\d+")
"""A temporary export or manifest (``<name>.<pid>``), renamed into place once written and checked."""


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """``path``'s temporary file, removed however the body ends unless it was renamed into place: a full disk or an
    interrupt left a partial ``text.onnx.<pid>`` of tens of MB behind, one more for every process that tried."""
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}")
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _sweep(directory: Path) -> None:
    """Remove temporaries that processes killed mid-export left behind (run under the export lock: none is live)."""
    for p in directory.iterdir():
        if _TEMPORARY.fullmatch(p.name):
            with contextlib.suppress(OSError):
                p.unlink()


def storage_error(directory: Path, e: OSError) -> EncoderStorageError:
    """``e`` met exporting the towers into ``directory`` (a full disk, a read-only RECSYS_HOME), said in one line."""
    from recsys.encoders.cache import disk_problem

    cause, hint = disk_problem(directory, e)
    return EncoderStorageError(
        f"cannot write the ONNX export of the encoder towers to {directory} ({cause}); its partial files were "
        f"removed: {hint} and rerun, or set RECSYS_ENCODER__RUNTIME=torch (no export needed)")


def _publish(tmp: Path, path: Path, towers_id: str, extra: dict[str, Any]) -> None:
    """Rename a checked export into place, then write its manifest (the manifest's digest makes it servable)."""
    os.replace(tmp, path)
    meta = {"towers": towers_id, "sha256": _sha256(path), "opset": OPSET, "torch": torch.__version__, **extra}
    with _temporary(path.with_suffix(".json")) as tmp_meta:
        tmp_meta.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_meta, path.with_suffix(".json"))


def session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cpu_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _check(tmp: Path, feed: dict[str, np.ndarray], ref: np.ndarray, tolerance: float, what: str) -> None:
    got = session(tmp).run(None, feed)[0]
    diff = float(np.abs(got - ref).max())
    if not diff <= tolerance:
        tmp.unlink(missing_ok=True)
        raise ModelUnavailable(f"ONNX export of the {what} differs from torch by {diff:.2e} (> {tolerance:.0e})")
    log.info("ONNX %s export checked: max |diff| %.2e", what, diff)


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], tmp: Path, names: list[str],
            axes: dict[str, dict[int, str]]) -> None:
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(tmp), opset_version=OPSET, input_names=names,
                          output_names=["features"], dynamic_axes=axes, dynamo=False)


def export_paths(directory: Path, base_id: str, runtime: str) -> tuple[Path, Path]:
    """Where the image and text exports of towers ``base_id`` lie under ``directory`` (``<home>/onnx``) for
    ``runtime`` (``onnx`` or ``onnx-int8``)."""
    d = directory / base_id.replace("/", "_")
    return d / "image.onnx", d / ("text-int8.onnx" if runtime == "onnx-int8" else "text.onnx")


class OnnxTowers:
    """Implements :class:`~recsys.encoders.towers.Towers` with ONNX Runtime sessions over exported lite towers."""

    def __init__(self, base: Any, directory: Path, runtime: str = "onnx", threads: int | None = None) -> None:
        if runtime not in ("onnx", "onnx-int8"):
            raise ConfigError(f"OnnxTowers runtime must be onnx or onnx-int8, not {runtime!r}")
        self.base, self.runtime = base, runtime
        self.id = base.id if runtime == "onnx" else f"{base.id}+int8-text"
        self.image_dim, self.text_dim = base.image_dim, base.text_dim
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.preprocess: Callable[[Image.Image], torch.Tensor] = base.preprocess
        self.context_length = base.context_length
        self.threads = threads or cpu_threads()
        self.directory = directory / base.id.replace("/", "_")
        try:
            image_path, text_path = self._exports()
        except OSError as e:  # a full disk or a read-only RECSYS_HOME: one line, not a traceback
            raise storage_error(self.directory, e) from e
        self.image_session = session(image_path, self.threads)
        self.text_session = session(text_path, self.threads)

    # -- exports ----------------------------------------------------------------------------------------------------
    def _exports(self) -> tuple[Path, Path]:
        """The image and text models, exported first when missing or damaged (under a lock: one process exports)."""
        ids = (self.base.id, self.id)
        image, text = export_paths(self.directory.parent, self.base.id, self.runtime)
        if _valid(image, ids[0]) and _valid(text, ids[1]):  # served as they are: no lock (a read-only home works)
            return image, text
        self.directory.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(str(self.directory / ".export.lock")):
            _sweep(self.directory)
            image_path = self._image_model()
            text_path = self._text_model()
            if self.runtime == "onnx-int8":
                text_path = self._quantised(text_path)
        return image_path, text_path

    def _image_model(self) -> Path:
        path = self.directory / "image.onnx"
        if _valid(path, self.base.id):
            return path
        log.info("exporting the recsys-lite image tower to ONNX (once per towers id): %s", path)
        model = self.base.image_model.float().to(memory_format=torch.contiguous_format)
        probe = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 224, 224, generator=probe)
        with _temporary(path) as tmp:
            try:
                _export(model, (x,), tmp, ["pixels"], {"pixels": {0: "n"}, "features": {0: "n"}})
                with torch.inference_mode():
                    ref = model(x).numpy()
                _check(tmp, {"pixels": x.numpy()}, ref, TOLERANCE, "image tower")
            finally:
                if self.base.channels_last:
                    self.base.image_model = model.to(memory_format=torch.channels_last)
            _publish(tmp, path, self.base.id, {"input": "pixels (n, 3, 224, 224) float32"})
        return path

    def _text_model(self) -> Path:
        path = self.directory / "text.onnx"
        if _valid(path, self.base.id):
            return path
        log.info("exporting the recsys-lite text tower to ONNX (once per towers id): %s", path)
        module = _TextForward(self.base.text_model).eval()
        ids, mask = self._tokens(["a probe sentence about a black cotton dress", "red"])
        axes = {"input_ids": {0: "n", 1: "tokens"}, "attention_mask": {0: "n", 1: "tokens"}, "features": {0: "n"}}
        with _temporary(path) as tmp:
            _export(module, (torch.from_numpy(ids), torch.from_numpy(mask)), tmp, ["input_ids", "attention_mask"],
                    axes)
            with torch.inference_mode():
                ref = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            _check(tmp, {"input_ids": ids, "attention_mask": mask}, ref, TOLERANCE, "text tower")
            _publish(tmp, path, self.base.id, {"inputs": "input_ids, attention_mask (n, tokens) int64"})
        return path

    def _quantised(self, source: Path) -> Path:
        path = self.directory / "text-int8.onnx"
        if _valid(path, self.id):
            return path
        from onnxruntime.quantization import QuantType, quantize_dynamic

        log.info("quantising the ONNX text tower to int8: %s", path)
        # The quantiser advises through logging.warning(), which would give the root logger a stderr handler.
        root, quiet = logging.getLogger(), logging.NullHandler()
        with _temporary(path) as tmp:
            root.addHandler(quiet)
            level = root.level
            root.setLevel(logging.ERROR)
            try:
                quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
                root.removeHandler(quiet)
            session(tmp, 1)  # loads: a broken file fails here, before it is published
            _publish(tmp, path, self.id, {"source": source.name,
                                          "quantisation": "dynamic int8 (MatMul), QInt8 weights"})
        return path

    # -- Towers ------------------------------------------------------------------------------------------------------
    def _tokens(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.base.tokenizer.tokenizer(texts, padding=True, truncation=True, max_length=self.context_length,
                                            return_tensors="np")
        return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)

    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        """(n, 3, 224, 224) preprocessed -> (n, image_dim) float32."""
        if len(batch) == 0:
            return torch.zeros(0, self.image_dim)
        x = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        return torch.from_numpy(self.image_session.run(None, {"pixels": x})[0])

    def text_features(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.text_dim)
        ids, mask = self._tokens(list(texts))
        return torch.from_numpy(self.text_session.run(None, {"input_ids": ids, "attention_mask": mask})[0])

    def __repr__(self) -> str:
        return f"OnnxTowers({self.id!r}, runtime={self.runtime!r}, threads={self.threads})"
