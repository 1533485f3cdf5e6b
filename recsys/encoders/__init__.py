"""Encoders: open_clip towers + fitted projection heads, item embedding with a cache, zero-shot tagging.

Public API (everything else is private)::

    get_encoder(settings=None) -> Encoder            # the configured preset, fitted heads loaded when present
    embed_catalog(store, settings, progress=None) -> EmbedReport
    load_item_vectors(settings=None, store=None) -> ItemVectors
    fit_encoder(store, settings, progress=None) -> FitReport
    tag_items(store, settings, vocabulary) -> TagReport
    list_presets(settings=None), get_preset(name, settings=None)
    load_image_file(path), image_from_bytes(data)     # safe decoding for queries (BadMedia on failure)

Heavy modules (torch, open_clip) load lazily on first use, so importing this package is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.encoders.base import Encoder, l2_normalise
    from recsys.encoders.embed import EmbedReport, embed_catalog
    from recsys.encoders.encoder import TowerEncoder, get_encoder
    from recsys.encoders.fit import FitReport, fit_encoder
    from recsys.encoders.media import image_from_bytes, load_image_file
    from recsys.encoders.registry import Preset, get_preset, list_presets
    from recsys.encoders.tagging import TagReport, read_vocabulary, tag_items
    from recsys.encoders.vectors import ItemVectors, fuse, load_item_vectors

_EXPORTS = {
    "Encoder": "base", "l2_normalise": "base",
    "EmbedReport": "embed", "embed_catalog": "embed",
    "TowerEncoder": "encoder", "get_encoder": "encoder",
    "FitReport": "fit", "fit_encoder": "fit",
    "image_from_bytes": "media", "load_image_file": "media",
    "Preset": "registry", "get_preset": "registry", "list_presets": "registry",
    "TagReport": "tagging", "read_vocabulary": "tagging", "tag_items": "tagging",
    "ItemVectors": "vectors", "fuse": "vectors", "load_item_vectors": "vectors",
}

__all__ = [
    "EmbedReport", "Encoder", "FitReport", "ItemVectors", "Preset", "TagReport", "TowerEncoder", "embed_catalog",
    "fit_encoder", "fuse", "get_encoder", "get_preset", "image_from_bytes", "l2_normalise", "list_presets",
    "load_image_file", "load_item_vectors", "read_vocabulary", "tag_items",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"recsys.encoders.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'recsys.encoders' has no attribute {name!r}")
