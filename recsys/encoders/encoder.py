"""The encoder object: frozen towers + fitted heads, and :func:`get_encoder`, the one way to get it.

The encoder id is ``<preset>@<heads version>`` (``@unfitted`` before ``recsys encoder fit``); every cached vector and
index generation records it, so vectors of different heads are never mixed.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from recsys.config import Settings, get_settings
from recsys.encoders.base import l2_normalise
from recsys.encoders.heads import Heads
from recsys.encoders.registry import Preset, get_preset
from recsys.encoders.towers import Towers, pick_device
from recsys.errors import ConfigError, IncompatibleArtifact, NotFound
from recsys.files import write_text_atomic

log = logging.getLogger(__name__)

_TOWERS: dict[tuple[str, str, str], Towers] = {}
_LOCK = threading.Lock()


def load_towers(preset: Preset, device_setting: str = "auto", runtime: str = "torch",
                home: Path | None = None) -> Towers:
    """The frozen towers of a preset, loaded once per process, on the runtime ``settings.encoder.runtime`` names
    (ONNX exports are cached under ``home/onnx``)."""
    from recsys.encoders.onnx_runtime import resolve_runtime

    device, dtype = _device(device_setting)
    setting, runtime = runtime, resolve_runtime(runtime, device, preset.kind)
    key = (preset.model_dump_json() + _checkpoint_stamp(preset), str(device), "torch")
    with _LOCK:
        if key not in _TOWERS:
            if preset.kind == "lite":
                from recsys.encoders.lite import LiteTowers

                _TOWERS[key] = LiteTowers(device, dtype)
            else:
                from recsys.encoders.hub import OpenClipTowers

                _TOWERS[key] = OpenClipTowers(preset, device, dtype)
        if runtime == "torch":
            return _TOWERS[key]
        onnx_key = (key[0], key[1], runtime)
        if onnx_key not in _TOWERS:
            from recsys.encoders.onnx_runtime import OnnxTowers

            try:
                _TOWERS[onnx_key] = OnnxTowers(_TOWERS[key], (home or Path(".recsys")) / "onnx", runtime)
            except Exception as e:
                if setting != "auto":
                    raise
                # auto promised only speed: an export this torch/onnxruntime pair cannot do falls back to torch.
                log.warning("ONNX towers unavailable (%s: %s); using torch (RECSYS_ENCODER__RUNTIME=torch hides "
                            "this)", type(e).__name__, e)
                _TOWERS[onnx_key] = _TOWERS[key]
        return _TOWERS[onnx_key]


def _checkpoint_stamp(preset: Preset) -> str:
    """Size and mtime of a preset's local checkpoint: one replaced in place is loaded again (with its new id)."""
    if not preset.checkpoint:
        return ""
    try:
        st = os.stat(Path(preset.checkpoint).expanduser())
    except OSError:
        return ""  # the load says what is wrong
    return f"|{st.st_size}|{st.st_mtime_ns}"


def _device(setting: str) -> tuple[torch.device, torch.dtype]:
    """The configured device, refused up front (ConfigError naming the setting) when torch cannot use it: otherwise
    the first batch fails deep inside torch with a CUDA traceback."""
    try:
        device, dtype = pick_device(setting)
    except RuntimeError as e:  # not a device name torch knows
        raise ConfigError(f"RECSYS_ENCODER__DEVICE={setting!r} is not a device ({str(e).splitlines()[0]}); use auto, "
                          "cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"RECSYS_ENCODER__DEVICE={setting!r} but torch finds no CUDA GPU here (no NVIDIA "
                              "driver or device, or a CPU-only torch): set RECSYS_ENCODER__DEVICE=cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"RECSYS_ENCODER__DEVICE={setting!r} but torch finds {count} CUDA GPU(s) "
                              f"(cuda:0..cuda:{count - 1}): pick one of those, or cpu")
    return device, dtype


def new_heads(preset: Preset, towers: Towers, seed: int = 0) -> Heads:
    dim = towers.image_dim if preset.head == "residual" else (preset.dim or 256)
    torch.manual_seed(seed)
    return Heads(towers.image_dim, towers.text_dim, dim, kind=preset.head, hidden=preset.hidden,
                 reduce=preset.reduce).eval()


def heads_root(settings: Settings, preset: Preset) -> Path:
    return settings.home / "encoders" / preset.name


def current_heads_dir(settings: Settings, preset: Preset) -> Path | None:
    """The current fitted heads; None before the first fit, and when ``CURRENT`` names heads that are gone (which
    :func:`get_encoder` refuses: ``recsys build`` fits new ones)."""
    pointer = heads_root(settings, preset) / "CURRENT"
    if not pointer.is_file():
        return None
    d = heads_root(settings, preset) / pointer.read_text().strip()
    return d if (d / "manifest.json").is_file() else None


def set_current_heads(settings: Settings, preset: Preset, version: str) -> None:
    write_text_atomic(heads_root(settings, preset) / "CURRENT", version)


class TowerEncoder:
    """Implements :class:`~recsys.encoders.base.Encoder` with frozen towers and projection heads."""

    def __init__(self, preset: Preset, towers: Towers, heads: Heads, version: str | None = None,
                 manifest: dict[str, Any] | None = None) -> None:
        self.preset, self.towers, self.heads = preset, towers, heads.eval()
        self.version = version
        self.manifest = manifest or {}
        self.id = f"{preset.name}@{version or 'unfitted'}"
        self.dim = heads.dim

    @property
    def fitted(self) -> bool:
        return self.version is not None

    @torch.inference_mode()
    def project_images(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """Image tower features (n, image_dim) -> unit vectors (n, dim)."""
        x = torch.as_tensor(np.asarray(feats, dtype=np.float32)).reshape(-1, self.towers.image_dim)
        return l2_normalise(self.heads.image(x).numpy())

    @torch.inference_mode()
    def project_texts(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        x = torch.as_tensor(np.asarray(feats, dtype=np.float32)).reshape(-1, self.towers.text_dim)
        return l2_normalise(self.heads.text(x).numpy())

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.project_texts(self.towers.text_features(list(texts)))

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """BadMedia for a picture too thin to preprocess in bounded memory (one given here, not decoded by
        :mod:`recsys.encoders.media`, which refuses those itself)."""
        from recsys.encoders.media import MediaError, check_aspect
        from recsys.errors import BadMedia

        if not images:
            return np.zeros((0, self.dim), np.float32)
        try:
            for im in images:
                check_aspect(im.width, im.height)
        except MediaError as e:
            raise BadMedia(str(e)) from None
        batch = torch.stack([self.towers.preprocess(im.convert("RGB")) for im in images])
        return self.project_images(self.towers.image_features(batch))

    def __repr__(self) -> str:
        return f"TowerEncoder({self.id!r}, dim={self.dim})"


def get_encoder(settings: Settings | None = None, *, preset: str | None = None, fitted: bool = True,
                version: str | None = None) -> TowerEncoder:
    """The configured encoder, with its current fitted heads when ``recsys encoder fit`` has made some (``version``:
    those heads instead, e.g. the ones an index generation was built with; NotFound when they are gone)."""
    settings = settings or get_settings()
    p = get_preset(preset or settings.encoder.preset, settings)
    d = current_heads_dir(settings, p) if fitted else None
    if fitted and d is None and version is None:
        _refuse_dangling_current(settings, p)
    if version is not None:
        d = heads_root(settings, p) / version
        if not (d / "manifest.json").is_file():
            raise NotFound(f"encoder heads {p.name}@{version} are not under {heads_root(settings, p)}")
    towers = load_towers(p, settings.encoder.device, settings.encoder.runtime, settings.home)
    if d is not None:
        heads, manifest = Heads.load(d, image_dim=towers.image_dim, text_dim=towers.text_dim, towers_id=towers.id)
        return TowerEncoder(p, towers, heads, manifest["version"], manifest)
    if p.kind == "lite" and fitted:
        log.warning("encoder %s has no fitted heads yet: items are placed by the towers' own features, which finds "
                    "text like text and images like images but does not match text to pictures, until `recsys "
                    "encoder fit` (at least 4 items with both a picture and text)", p.name)
    return TowerEncoder(p, towers, new_heads(p, towers))


def _refuse_dangling_current(settings: Settings, preset: Preset) -> None:
    """IncompatibleArtifact when ``CURRENT`` names heads that are not there (moved or deleted): random heads would
    embed the whole catalogue into a meaningless space, under a warning that said no fit had happened."""
    root = heads_root(settings, preset)
    try:
        version = (root / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return
    except OSError as e:
        raise IncompatibleArtifact(f"cannot read {root / 'CURRENT'} ({e.strerror}); check the data directory's "
                                   "permissions") from e
    raise IncompatibleArtifact(f"{root / 'CURRENT'} names the encoder heads {version!r}, which are not under {root} "
                               f"(no {version}/manifest.json: moved or deleted); restore that folder, or run `recsys "
                               "encoder fit` (or `recsys build`) to fit new heads")


def encoder_for(settings: Settings, encoder_id: str | None) -> TowerEncoder:
    """The encoder that made the vectors ``encoder_id`` (``preset@version``) names: the configured preset with those
    heads, so queries land in an index generation's own space. The configured encoder when the id names another
    preset or heads no longer stored (queries then meet the generation's check, which says what to do).

    IncompatibleArtifact naming ``recsys build`` when those heads were fitted for other towers than the configured
    ones (a local checkpoint replaced in place, another ``RECSYS_ENCODER__RUNTIME``): the served index is of their
    vectors, so a new fit alone (which the heads' own refusal asks for) never helps: the index must be rebuilt."""
    p = get_preset(settings.encoder.preset, settings)
    preset, _, version = (encoder_id or "").partition("@")
    if preset == p.name and version not in ("", "unfitted"):
        try:
            return get_encoder(settings, version=version)
        except NotFound as e:
            log.warning("%s; queries use the current heads", e)
        except IncompatibleArtifact as e:
            raise _index_of_other_towers(settings, p, str(encoder_id), e) from e
    return get_encoder(settings)


def _heads_towers(directory: Path | None) -> str | None:
    """The towers id the heads in ``directory`` were fitted for (their manifest's), None when it cannot be read."""
    import json

    if directory is None:
        return None
    try:
        return str(json.loads((directory / "manifest.json").read_text(encoding="utf-8"))["towers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _index_of_other_towers(settings: Settings, preset: Preset, encoder_id: str,
                           why: IncompatibleArtifact) -> IncompatibleArtifact:
    """What to do when the served index's heads cannot encode queries with the configured towers: said apart for
    heads already fitted for these towers (the index is older than them) and none fitted yet."""
    old = _heads_towers(heads_root(settings, preset) / encoder_id.partition("@")[2])
    towers = load_towers(preset, settings.encoder.device, settings.encoder.runtime, settings.home).id
    if old is None or old == towers:  # not a towers mismatch (damaged heads...): their own message says what to do
        return why
    current = current_heads_dir(settings, preset)
    head = (f"the served index was built with encoder {encoder_id}, whose heads were fitted for towers {old}, not "
            f"the configured {towers} (a local checkpoint replaced, or another RECSYS_ENCODER__RUNTIME): queries "
            "cannot be encoded for it")
    back = "or switch RECSYS_ENCODER__RUNTIME or the checkpoint back"
    if current is not None and _heads_towers(current) == towers:
        return IncompatibleArtifact(
            f"{head}. The current heads {preset.name}@{current.name} fit these towers, but no index of their vectors "
            f"is served yet: run `recsys build` (or `recsys embed`, then `recsys index build`), {back}")
    return IncompatibleArtifact(
        f"{head}, and no heads are fitted for these towers yet: run `recsys build` (it fits the heads, embeds, "
        f"indexes and trains as needed), {back}")


def query_encoder_of(settings: Settings, encoder_id: str) -> tuple[str, int | None] | None:
    """Id and dimension of the encoder that queries against a generation of ``encoder_id`` are encoded with, picked
    as :func:`recsys.encoders.encoder.encoder_for` picks it (that generation's heads when they are stored, else the
    current ones), from the heads' manifests without loading a model; None when it cannot be told. Kept beside
    :func:`encoder_for`, whose choice it must follow (``recsys index rollback`` and readiness judge a generation by
    it): IncompatibleArtifact, saying why, when those heads were fitted for other towers than the configured ones
    (:func:`configured_towers_id`), which :func:`encoder_for` refuses, so no query can be encoded at all."""
    import json

    from recsys.errors import RecsysError

    try:
        preset = get_preset(settings.encoder.preset, settings)
    except RecsysError:
        return None
    name, _, version = encoder_id.partition("@")
    heads = heads_root(settings, preset)
    own = heads / version if name == preset.name and version not in ("", "unfitted") else None
    d = own if own is not None and (own / "manifest.json").is_file() else current_heads_dir(settings, preset)
    if d is None:  # no fitted heads: the unfitted encoder answers, unless CURRENT names heads that are gone
        return None if (heads / "CURRENT").exists() else (f"{preset.name}@unfitted", None)
    try:
        m = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        found, fitted_for = (f"{preset.name}@{m['version']}", int(m["dim"])), m.get("towers")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    towers = configured_towers_id(settings, preset) if fitted_for is not None else None
    if towers is not None and str(fitted_for) != towers:
        raise IncompatibleArtifact(
            f"{'its heads' if d == own else 'the current heads'} {found[0]} were fitted for towers "
            f"{fitted_for}, not the configured {towers} (another RECSYS_ENCODER__RUNTIME, or a local checkpoint "
            "replaced)")
    return found


def configured_towers_id(settings: Settings, preset: Preset) -> str | None:
    """The id of the towers :func:`load_towers` loads for ``preset`` as configured (the one fitted heads record),
    told without loading a model (tests hold the two equal); None when it cannot be told (a device or runtime
    setting that cannot be used, an unreadable checkpoint: loading says what is wrong)."""
    from recsys.encoders.onnx_runtime import resolve_runtime
    from recsys.errors import RecsysError

    try:
        runtime = resolve_runtime(settings.encoder.runtime, _device(settings.encoder.device)[0], preset.kind)
        if preset.kind == "lite":
            from recsys.encoders.lite import FEATURES_VERSION

            base = f"recsys-lite-towers/{FEATURES_VERSION}"  # LiteTowers.id
        else:  # OpenClipTowers.id
            from recsys.encoders.cache import digest

            weights = preset.pretrained or "random"
            if preset.checkpoint:
                weights = f"sha256:{_checkpoint_digest(Path(preset.checkpoint).expanduser())}"
            base = f"open_clip/{preset.arch or 'custom'}/{digest(weights, preset.model_cfg)[:12]}"
    except (RecsysError, OSError):
        return None
    return f"{base}+int8-text" if runtime == "onnx-int8" else base  # OnnxTowers.id


def _checkpoint_digest(path: Path) -> str:
    """:func:`recsys.encoders.hub.checkpoint_digest`, read once per process while the file's size and mtime stay."""
    st = os.stat(path)
    return _digest_of(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    from recsys.encoders.hub import checkpoint_digest

    return checkpoint_digest(Path(path))
