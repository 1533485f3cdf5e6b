"""open_clip presets: any architecture with a pretrained tag (hub, when online) or a local checkpoint.

Nothing is downloaded unless the configured preset names a hub tag; even then the hub is probed first with a short
timeout, so an offline machine gets :class:`~recsys.errors.ModelUnavailable` naming the setting to change at once
instead of a hang. A cached model loads offline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from recsys.encoders.registry import Preset
from recsys.encoders.towers import offline_hub, quiet_transformers
from recsys.errors import ModelUnavailable

log = logging.getLogger(__name__)

HUB_HOST = ("huggingface.co", 443)
PROBE_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def cached_weights(arch: str, tag: str) -> bool:
    """Whether open_clip's weights for (arch, tag) are already on disk (Hugging Face cache or open_clip's URL cache)."""
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch, tag) or {}
    hub_id = str(cfg.get("hf_hub") or "").strip("/")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
                if isinstance(try_to_load_from_cache(hub_id, name), str):
                    return True
        except ImportError:
            pass
    url = str(cfg.get("url") or "")
    if url:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip"
        return (root / os.path.basename(url)).is_file()
    return False


def checkpoint_digest(path: Path) -> str:
    """SHA-256 of a checkpoint file's content: part of the towers id, so a checkpoint retrained and written over
    the same path gets new feature caches, heads and item vectors (its path alone kept serving the old model's). A
    content hash, not size and mtime, so a copied data directory and checkpoint (``cp`` without ``-p``) keep their
    caches; it reads the file once per process, about a second per GB, beside the load that reads it anyway."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _unavailable(preset: Preset, why: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"encoder preset {preset.name!r} ({preset.arch or 'inline model_cfg'} / "
        f"{preset.pretrained or preset.checkpoint}) is unavailable: "
        f"{why}. Set RECSYS_ENCODER__PRESET=recsys-lite (offline default) or point a preset's \"checkpoint\" at a "
        "local file"
    )


def _not_a_checkpoint(preset: Preset, path: Path, why: str) -> ModelUnavailable:
    return _unavailable(
        preset, f"the checkpoint file {path} is not an open_clip/PyTorch checkpoint ({why}); expected the file "
        "torch.save(model.state_dict()) writes (a dict of tensors, or one under \"state_dict\") for the preset's "
        "architecture: check that \"checkpoint\" names the right file and that it was copied whole (a file holding a "
        "whole pickled model or other Python objects is not loaded: save its state_dict() alone)")


def _load_error(path: Path, e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in a few words: never torch's advice to turn
    ``weights_only`` off (arbitrary code execution) or to report the file to PyTorch."""
    size = path.stat().st_size if path.is_file() else -1
    if size == 0:
        return "the file is empty"
    text = str(e)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n")[0].strip()
        if detail.startswith("Unsupported global:"):
            return f"it holds a Python object, not only tensors: {detail.split(' was not', 1)[0]}"
        return f"not a pickle of tensors: {detail}" if detail else "not a pickle of tensors"
    if isinstance(e, EOFError | pickle.UnpicklingError):
        return f"cut short or not a pickle ({type(e).__name__}), {size:,} bytes"
    return f"torch cannot read it: {type(e).__name__}{f': {text.splitlines()[0]}' if text else ''}"


def read_state_dict(preset: Preset, path: Path) -> Mapping[str, Any]:
    """The state dict in a local checkpoint, loaded with ``weights_only`` (no code in it runs); ModelUnavailable
    saying the file is not a checkpoint (random bytes, text, an empty or cut file, a pickled object)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise _unavailable(preset, f"cannot read the checkpoint file {path} ({e.strerror or e})") from e
    except Exception as e:  # torch raises UnpicklingError, EOFError, KeyError, RuntimeError... for a non-checkpoint
        raise _not_a_checkpoint(preset, path, _load_error(path, e)) from e
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise _not_a_checkpoint(preset, path, f"it holds a {type(state).__name__}, not a dict of tensors")
    if not state:
        raise _not_a_checkpoint(preset, path, "it holds an empty dict")
    return state


def _build_from_cfg(preset: Preset) -> Any:
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = dict(preset.model_cfg or {})
    cls = CustomTextCLIP if "hf_model_name" in (cfg.get("text_cfg") or {}) else CLIP
    return cls(**cfg)


def load_open_clip(preset: Preset) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer) for an open_clip preset, in eval mode on the CPU."""
    import open_clip

    quiet_transformers()
    if preset.checkpoint:
        path = Path(preset.checkpoint).expanduser()
        if not path.is_file():
            raise _unavailable(preset, f"checkpoint file {path} not found")
    try:
        if preset.model_cfg is not None:
            with offline_hub():
                model = _build_from_cfg(preset)
            if preset.checkpoint:
                model.load_state_dict(read_state_dict(preset, Path(preset.checkpoint).expanduser()))
            vcfg = preset.model_cfg.get("vision_cfg", {})
            preprocess = open_clip.image_transform(vcfg.get("image_size", 224), is_train=False)
            tcfg = preset.model_cfg.get("text_cfg", {})
            if tcfg.get("hf_tokenizer_name"):
                with offline_hub():
                    tokenizer: Any = open_clip.tokenizer.HFTokenizer(tcfg["hf_tokenizer_name"],
                                                                    context_length=tcfg.get("context_length", 77))
            else:
                tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=tcfg.get("context_length", 77))
        else:
            if not preset.arch:
                raise _unavailable(preset, "the preset names no arch")
            if preset.arch not in open_clip.list_models():
                raise _unavailable(preset, f"open_clip has no architecture {preset.arch!r}")
            source = preset.checkpoint or preset.pretrained
            if preset.needs_network and not hub_reachable():
                # Maybe cached: try strictly offline, never reaching out.
                if not cached_weights(preset.arch, str(preset.pretrained)):
                    raise _unavailable(preset, "not in the local cache and the model hub is unreachable")
                try:
                    with offline_hub():
                        model, _, preprocess = open_clip.create_model_and_transforms(preset.arch, pretrained=source)
                except Exception as e:
                    raise _unavailable(preset, f"not in the local cache and the model hub is unreachable ({e})") from e
            else:
                model, _, preprocess = open_clip.create_model_and_transforms(preset.arch, pretrained=source)
            tokenizer = open_clip.get_tokenizer(preset.arch)
    except ModelUnavailable:
        raise
    except Exception as e:
        if preset.model_cfg is None and preset.checkpoint and not preset.checkpoint.endswith(".safetensors"):
            read_state_dict(preset, Path(preset.checkpoint).expanduser())  # open_clip read it: say a non-checkpoint
        raise _unavailable(preset, f"{type(e).__name__}: {e}") from e
    model.eval()
    return model, preprocess, tokenizer


class OpenClipTowers:
    """A whole open_clip model as frozen towers: features are its normalised embeddings."""

    def __init__(self, preset: Preset, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        from recsys.encoders.cache import digest

        model, preprocess, tokenizer = load_open_clip(preset)
        self.model = model.to(device=device, dtype=dtype)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device, self.dtype = device, dtype
        with torch.inference_mode():
            dim = int(self.model.encode_text(tokenizer(["x"]).to(device)).shape[-1])
        self.image_dim = self.text_dim = dim
        weights = preset.pretrained or "random"
        if preset.checkpoint:
            weights = f"sha256:{checkpoint_digest(Path(preset.checkpoint).expanduser())}"
        self.id = f"open_clip/{preset.arch or 'custom'}/{digest(weights, preset.model_cfg)[:12]}"

    @torch.inference_mode()
    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, self.dtype)
        return self.model.encode_image(x, normalize=True).float().cpu()

    @torch.inference_mode()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.text_dim)
        return self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True).float().cpu()
