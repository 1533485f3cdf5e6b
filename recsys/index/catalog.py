"""Glue from the store and the encoders to index generations: what ``recsys index build`` runs.

``build_from_catalog`` decides between nothing to do (the catalogue did not change since the served generation),
a delta generation (a few items new, changed or removed) and a full rebuild (first build, another encoder,
``--full``, or changes beyond ``delta_max_fraction`` of the catalogue).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from recsys.errors import IncompatibleArtifact, NoIndex, NotFound
from recsys.index import layout
from recsys.index.build import DEAD_FILE, build_delta_generation, build_generation
from recsys.index.meta import META_FILE, ItemMeta

if TYPE_CHECKING:
    import pandas as pd

    from recsys.config import Settings

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]


class ItemVectorsLike(Protocol):
    """What the encoders package hands over (``recsys.encoders.load_item_vectors``)."""

    item_ids: list[str]
    fused: np.ndarray
    text: np.ndarray
    image: np.ndarray
    has_image: np.ndarray
    encoder_id: str


VectorProvider = Callable[["Settings", Any], ItemVectorsLike]


def index_root(settings: Settings) -> Path:
    """Where generations live: ``$RECSYS_HOME/index``."""
    return Path(settings.home) / "index"


@dataclass
class _Change:
    changed: list[str]
    removed: list[str]
    base_live: int


def _diff(root: Path, cur: layout.Manifest, meta: ItemMeta) -> _Change:
    """Items new or changed (updated_at, content hash or vectors differ) and items gone, against generation ``cur``
    (one built before vectors were fingerprinted finds every item changed: rebuilt once)."""
    gdir = layout.generations_dir(root) / cur.generation_id
    old = ItemMeta.load(gdir / META_FILE)
    dead = np.load(gdir / DEAD_FILE)
    live = np.flatnonzero(~dead)
    before = {i: (old.updated_at[r], old.content_hash[r]) for i, r in zip(old.item_ids[live].tolist(), live.tolist(),
                                                                           strict=True)}
    now = dict(zip(meta.item_ids.tolist(), zip(meta.updated_at.tolist(), meta.content_hash.tolist(), strict=True),
                   strict=True))
    changed = [i for i, v in now.items() if before.get(i) != v]
    removed = [i for i in before if i not in now]
    return _Change(changed, removed, len(before))


def build_from_catalog(store: Any, settings: Settings, progress: Progress | None = None, *,
                       mode: str = "auto", factory: str | None = None,
                       vectors: VectorProvider | None = None, switch: bool = True) -> dict[str, Any]:
    """Index the store's live items (not hidden, not deleted) with the encoder's vectors. Without ``switch`` the
    new generation is written and not served (``recsys build`` serves it with the ranker trained on it).

    ``mode``: "auto" (skip / delta / full as above), "full" or "delta". ``vectors`` replaces
    ``recsys.encoders.load_item_vectors`` (tests, custom pipelines). Returns a report: action (skipped, delta,
    full), generation id, item count, recall@10 per modality, seconds.
    """
    from recsys.store.queries import items_frame

    if mode not in ("auto", "full", "delta"):
        raise ValueError(f"mode must be auto, full or delta, not {mode!r}")
    if vectors is None:  # encoders sit inward of the index: a plain import (lazy, as torch comes with it)
        from recsys.encoders import load_item_vectors

        # the whole snapshot, not only the store's items: an item written after the last embed (by another writer
        # while this one embedded) is the next run's to index, not an error that fails this one
        vectors = lambda st, _store: load_item_vectors(st)  # noqa: E731
    root = index_root(settings)
    with store.session() as s:
        df = items_frame(s, include_removed=True)
    df = df[~(df["hidden"].astype(bool) | df["deleted"].astype(bool))]
    if progress:
        progress("reading vectors", 0, len(df))
    iv = vectors(settings, store)
    if progress:
        progress("reading vectors", len(df), len(df))
    pos = {str(i): r for r, i in enumerate(iv.item_ids)}
    have = df["item_id"].astype(str).isin(pos)
    if (~have).any():
        log.warning("%d live items have no vectors yet and are left out of the index (e.g. %s): `recsys embed` "
                    "and a build index them", int((~have).sum()), df.loc[~have, "item_id"].head(5).tolist())
    df = _as_embedded(df[have].copy(), pos, getattr(iv, "content_hash", None))
    meta = ItemMeta.from_frame(df)
    rows = np.array([pos[i] for i in meta.item_ids.tolist()], dtype=np.int64)
    mats = {"fused": iv.fused[rows], "text": iv.text[rows], "image": iv.image[rows]}
    # what an item's indexed row stands for is its content and its vectors: text fields, modality weights, a
    # generated description or a new photo behind the same path change the vectors and not the content hash
    meta.content_hash[:] = [f"{h}|{d}" for h, d in zip(meta.content_hash.tolist(), vector_digests(mats), strict=True)]
    present = {"image": np.asarray(iv.has_image, bool)[rows],
               "text": _nonzero(mats["text"]), "fused": _nonzero(mats["fused"])}
    newest = max((str(u) for u in meta.updated_at if u is not None), default="")
    watermark = f"{newest}|{len(meta)}"
    dim = int(mats["fused"].shape[1])

    action = "full"
    ch: _Change | None = None
    cur_id = layout.current_id(root)
    mode = mode if cur_id is None or mode == "full" or _usable_base(root, cur_id) else "full"
    if cur_id is not None and mode != "full":
        cur = layout.read_manifest(layout.generation_path(root, cur_id))
        if cur.encoder_id == iv.encoder_id and cur.dim == dim and set(cur.modalities) == set(mats):
            ch = _diff(root, cur, meta)
            if not ch.changed and not ch.removed:
                log.info("index generation %s is up to date", cur_id)
                return {"action": "skipped", "generation": cur_id, "items": cur.item_count}
            small = len(ch.changed) + len(ch.removed) <= settings.index.delta_max_fraction * max(ch.base_live, 1)
            if mode == "delta" or small:
                action = "delta"
        elif mode == "delta":
            log.warning("current generation was built with another encoder or dimension; doing a full build")
    elif mode == "delta":
        log.warning("no generation to apply a delta to; doing a full build")

    if action == "delta" and ch is not None:
        sel = np.flatnonzero(np.isin(meta.item_ids, np.array(ch.changed, dtype=object)))
        m = build_delta_generation(
            root, meta.item_ids[sel].tolist(), {k: v[sel] for k, v in mats.items()}, encoder_id=iv.encoder_id,
            watermark=watermark, meta=meta.take(sel), present={k: v[sel] for k, v in present.items()},
            removed=ch.removed, settings=settings.index, store=store, make_current=switch)
        log.info("delta generation %s: %d new or changed, %d removed", m.generation_id, len(ch.changed),
                 len(ch.removed))
    else:
        m = build_generation(root, meta.item_ids.tolist(), mats, encoder_id=iv.encoder_id, watermark=watermark,
                             meta=meta, present=present, factory=factory, settings=settings.index, store=store,
                             progress=progress, make_current=switch)
    return {"action": action, "generation": m.generation_id, "items": m.item_count, "factory": m.factory,
            "recall_at_10": m.recall_at_10, "seconds": m.build_seconds, "without_vectors": int((~have).sum())}


def _usable_base(root: Path, cur_id: str) -> bool:
    """Whether generation ``cur_id`` can be the base of a delta: readable, and no file missing or truncated (a
    delta would link them into the new generation too). Otherwise a full build is the fix, said in the log."""
    try:
        lacking = layout.files_damaged(root, cur_id)
    except (IncompatibleArtifact, NotFound, NoIndex) as e:  # unreadable, or CURRENT names a generation that is gone
        log.warning("the current index generation cannot be read (%s); building a full one", e)
        return False
    if lacking:
        log.warning("index generation %s has missing or truncated files %s; building a full one instead of a delta",
                    cur_id, lacking[:5])
    return not lacking


def vector_digests(mats: dict[str, np.ndarray], chunk: int = 16_384) -> list[str]:
    """A fingerprint of each row's vectors, every modality bit for bit (a random linear hash of the float32 bit
    patterns in wrapping 64-bit integers: exact, the same on every machine, and a few seconds at 10M rows)."""
    rng = np.random.default_rng(20261206)
    n = len(next(iter(mats.values())))
    out = np.zeros(n, dtype=np.uint64)
    for name in sorted(mats):
        m = np.ascontiguousarray(mats[name], dtype=np.float32)
        weights = rng.integers(1, 2**63, size=m.shape[1], dtype=np.uint64) | np.uint64(1)
        for a in range(0, n, chunk):
            bits = m[a:a + chunk].view(np.uint32).astype(np.uint64)
            out[a:a + chunk] = out[a:a + chunk] * np.uint64(1_000_003) + (bits * weights).sum(axis=1, dtype=np.uint64)
    return [f"{x:016x}" for x in out.tolist()]


def _as_embedded(df: pd.DataFrame, pos: dict[str, int], hashes: list[str] | None) -> pd.DataFrame:
    """``df`` with each item's content hash as its vectors were made: an item changed after the last embed keeps
    the hash its vectors stand for, so the next run finds it changed and indexes it again (with the store's hash
    its stale vectors would look current for good)."""
    if hashes is not None and len(df):
        embedded = [hashes[pos[str(i)]] or h for i, h in zip(df["item_id"], df["content_hash"], strict=True)]
        stale = int(sum(a != b for a, b in zip(embedded, df["content_hash"], strict=True)))
        if stale:
            log.info("%d item(s) changed after the last embed: indexed as embedded, again on the next run", stale)
        df["content_hash"] = embedded
    return df


def _nonzero(v: np.ndarray) -> np.ndarray:
    """Rows that hold a vector: not all zeros (a missing modality). A row with NaN counts as present, so the build's
    finite check names it instead of the item silently leaving the index."""
    return np.asarray(np.linalg.norm(v, axis=1) != 0)
