"""Named encoder presets, stored as JSON (models are data).

Built-in presets live in ``recsys/encoders/presets/*.json``; a user adds more as JSON files in
``settings.home/presets/``, or sets ``RECSYS_ENCODER__PRESET`` to the path of a JSON file. Two kinds:

- ``lite``: the offline recsys-lite towers (:mod:`recsys.encoders.lite`);
- ``open_clip``: any open_clip architecture with a pretrained tag (hub) or a local ``checkpoint`` file, optionally
  with an inline ``model_cfg`` for architectures open_clip does not know.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from recsys.config import Settings
from recsys.errors import ConfigError, UnknownPreset

BUILTIN_DIR = Path(__file__).parent / "presets"


class Preset(BaseModel):
    name: str
    kind: Literal["lite", "open_clip"]
    description: str = ""
    arch: str | None = None
    pretrained: str | None = None
    """open_clip pretrained tag (downloads from the hub when not cached)."""
    checkpoint: str | None = None
    """A local checkpoint file: never any network."""
    model_cfg: dict[str, Any] | None = None
    """Inline open_clip model config (embed_dim, vision_cfg, text_cfg) for an architecture open_clip lacks."""
    dim: int | None = None
    head: Literal["mlp", "residual"] = "mlp"
    hidden: int = 1024
    reduce: int = 0
    """PCA width the image features are reduced to before an mlp head (0: none)."""
    source: str = ""

    @property
    def needs_network(self) -> bool:
        return self.kind == "open_clip" and not self.checkpoint and bool(self.pretrained)


def _read(path: Path) -> Preset:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        return Preset(**data, source=str(path))
    except (OSError, ValueError, ValidationError, TypeError) as e:  # ValueError: not JSON, or not UTF-8 text
        raise ConfigError(f"encoder preset file {path} is invalid: {e}") from e


def _dirs(settings: Settings | None) -> list[Path]:
    dirs = [BUILTIN_DIR]
    if settings is not None:
        dirs.append(settings.home / "presets")
    return dirs


def list_presets(settings: Settings | None = None) -> list[Preset]:
    """Every preset, built-in first; a user preset of the same name overrides the built-in one."""
    found: dict[str, Preset] = {}
    for d in _dirs(settings):
        if d.is_dir():
            for p in sorted(d.glob("*.json")):
                preset = _read(p)
                found[preset.name] = preset
    return list(found.values())


def get_preset(name: str, settings: Settings | None = None) -> Preset:
    """The preset called ``name`` (or read from ``name`` when it is a path to a JSON file)."""
    if name.endswith(".json") and Path(name).is_file():
        return _read(Path(name))
    presets = {p.name: p for p in list_presets(settings)}
    if name not in presets:
        raise UnknownPreset(
            f"unknown encoder preset {name!r}; valid presets: {', '.join(sorted(presets))} "
            "(set RECSYS_ENCODER__PRESET, or add a JSON file to <home>/presets/)"
        )
    return presets[name]
