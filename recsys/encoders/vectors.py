"""Item vectors as the rest of recsys sees them: :class:`ItemVectors` and :func:`load_item_vectors`.

Per-modality vectors are kept; the fused vector is computed when loading, from ``settings.encoder.modality_weights``
(DESIGN.md decision 4), so changing the weights needs no re-encoding:
``fused = normalise(w_text * text + w_image * image)``, where ``image`` is zero for an item without a usable image.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.config import Settings, get_settings
from recsys.encoders import safe_npz
from recsys.encoders.base import l2_normalise
from recsys.encoders.cache import _safe
from recsys.errors import EncoderError
from recsys.files import atomic_path

if TYPE_CHECKING:
    from recsys.encoders.encoder import TowerEncoder


@dataclass
class ItemVectors:
    """Vectors aligned by row with ``item_ids``; all float32, rows unit length (``image`` rows zero where
    ``has_image`` is False)."""

    item_ids: list[str]
    fused: np.ndarray
    text: np.ndarray
    image: np.ndarray
    has_image: np.ndarray
    encoder_id: str
    tower_text: np.ndarray | None = None
    """(n, text tower dim): the items' texts in the text tower's own space (see ``embed.tower_text_vectors``);
    None for snapshots written before it existed."""
    content_hash: list[str] | None = None
    """Each item's content hash as it was embedded (an item may change in the store after its vectors were made);
    None for snapshots written before it was kept."""

    @property
    def dim(self) -> int:
        return int(self.fused.shape[1])

    def __len__(self) -> int:
        return len(self.item_ids)


def pack(text: np.ndarray, image: np.ndarray, has_image: bool) -> np.ndarray:
    return np.concatenate([text, image, [1.0 if has_image else 0.0]]).astype(np.float32)


def fuse(text: np.ndarray, image: np.ndarray, has_image: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    wt, wi = float(weights.get("text", 1.0)), float(weights.get("image", 1.0))
    fused = wt * text + wi * image * has_image[:, None]
    # An item whose weighted modalities are all missing falls back to its text vector.
    empty = np.linalg.norm(fused, axis=1) < 1e-6
    fused[empty] = text[empty]
    return l2_normalise(fused)


def snapshot_dir(settings: Settings, encoder_id: str) -> Path:
    return settings.home / "vectors" / _safe(encoder_id)


def write_snapshot(settings: Settings, encoder_id: str, dim: int, item_ids: list[str],
                   packed: list[np.ndarray], tower_text: np.ndarray | None = None,
                   hashes: list[str] | None = None) -> Path:
    d = snapshot_dir(settings, encoder_id)
    d.mkdir(parents=True, exist_ok=True)
    arr = np.stack(packed).astype(np.float32) if packed else np.zeros((0, 2 * dim + 1), np.float32)
    extra: dict[str, Any] = {} if tower_text is None else {"tower_text": tower_text.astype(np.float32)}
    if hashes is not None:
        extra["hashes"] = np.array(hashes, dtype=object)
    with atomic_path(d / "vectors.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, ids=np.array(item_ids, dtype=object), packed=arr, **extra)
    return d / "vectors.npz"


def load_item_vectors(settings: Settings | None = None, store: object | None = None,
                      encoder: TowerEncoder | None = None) -> ItemVectors:
    """The vectors of the last ``recsys embed`` with the current encoder (or ``encoder``: heads a build fitted and
    has not made current yet), fused with the configured weights.

    With a ``store``, only items currently in it (not deleted) are returned, in the store's order.
    """
    from recsys.encoders.encoder import get_encoder

    settings = settings or get_settings()
    encoder = encoder or get_encoder(settings)
    enc_id = encoder.id
    path = snapshot_dir(settings, enc_id) / "vectors.npz"
    if not path.is_file():
        raise EncoderError(f"no item vectors for encoder {enc_id} yet; run `recsys build` (or, with the encoder's "
                           "heads fitted, `recsys embed`)")
    damaged = f"the item vectors snapshot {path} is damaged ({{}}); `recsys embed` (or `recsys build`) writes it again"
    try:
        z = safe_npz.load(path, ("ids", "packed", "tower_text", "hashes"))
        ids = [str(x) for x in z["ids"]]
        packed = z["packed"]
        tower = z.get("tower_text")
        hashes = [str(x) for x in z["hashes"]] if "hashes" in z else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise EncoderError(damaged.format(f"{type(e).__name__}: {e}")) from e
    dim = encoder.dim
    if packed.ndim != 2 or packed.shape != (len(ids), 2 * dim + 1) or (
            tower is not None and len(tower) != len(ids)) or (hashes is not None and len(hashes) != len(ids)):
        raise EncoderError(damaged.format(f"{len(ids)} ids, vectors of shape {packed.shape}; the encoder {enc_id} "
                                          f"makes {2 * dim + 1} columns"))
    if store is not None:
        from recsys.encoders.catalog import read_items

        wanted = [it.item_id for it in read_items(store)]  # type: ignore[arg-type]
        pos = {i: r for r, i in enumerate(ids)}
        missing = [i for i in wanted if i not in pos]
        if missing:
            raise EncoderError(f"{len(missing)} item(s) (e.g. {missing[:3]}) have no vectors for encoder {enc_id}; "
                               "run `recsys embed`")
        sel = [pos[i] for i in wanted]
        packed = packed[sel] if wanted else packed[:0]
        tower = tower[sel] if tower is not None and wanted else (tower[:0] if tower is not None else None)
        hashes = None if hashes is None else [hashes[r] for r in sel]
        ids = wanted
    d = (packed.shape[1] - 1) // 2
    text, image = packed[:, :d].copy(), packed[:, d : 2 * d].copy()
    has_image = packed[:, 2 * d] > 0.5
    return ItemVectors(ids, fuse(text, image, has_image, settings.encoder.modality_weights), text, image, has_image,
                       enc_id, tower, hashes)


def load_tower_text(settings: Settings, encoder_id: str, item_ids: list[str]) -> np.ndarray | None:
    """The items' tower text vectors from the last ``recsys embed`` snapshot, aligned with ``item_ids`` (zero rows for
    items it lacks); None when the snapshot has none."""
    path = snapshot_dir(settings, encoder_id) / "vectors.npz"
    if not path.is_file():
        return None
    z = safe_npz.load(path, ("ids", "tower_text"))
    if "tower_text" not in z:
        return None
    pos = {str(x): r for r, x in enumerate(z["ids"])}
    tower = z["tower_text"]
    out = np.zeros((len(item_ids), tower.shape[1]), np.float32)
    rows = np.array([pos.get(str(i), -1) for i in item_ids], dtype=np.int64)
    out[rows >= 0] = tower[rows[rows >= 0]]
    return out
