"""Searching one generation. FAISS row positions stay in here: callers speak item ids (DESIGN.md decision 6).

A search restricted by a filter, exclusions or dead rows runs with a FAISS ``IDSelectorBitmap`` over the allowed
rows. When the allowed set is small (``exact_subset_max``) it is searched exactly instead, and an approximate search
that comes back short (HNSW under a very selective filter) is retried with a larger over-fetch, then finished
exactly: a filtered request returns k items whenever k items qualify.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tokenize import TokenError
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.errors import IndexError_, UnknownItem, ValidationFailed
from recsys.index import layout
from recsys.index.build import DEAD_FILE
from recsys.index.factory import exact_topk, faiss_module, is_exact, normalise, rerank, search_params
from recsys.index.layout import Manifest
from recsys.index.meta import META_FILE, ItemFilter, ItemMeta

if TYPE_CHECKING:
    from recsys.config import IndexSettings

log = logging.getLogger(__name__)

Hits = list[tuple[str, float]]
RETRIES = 3
"""Over-fetch rounds (x4 each) before an approximate search that came back short is finished exactly."""


@dataclass
class _Part:
    """One modality of one segment: its index, its vectors on disk and where its positions live globally."""

    index: Any
    vectors: np.ndarray
    rows: np.ndarray
    """global row of each index position (HNSW segments keep graph order, so not sorted)"""
    lossy: bool
    by_row: np.ndarray = field(init=False)
    """positions sorted by global row, for lookups by item"""
    sorted_rows: np.ndarray = field(init=False)
    """``rows[by_row]``, computed once at load (lookups are on the request path)"""

    def __post_init__(self) -> None:
        self.by_row = np.argsort(self.rows, kind="stable")
        self.sorted_rows = self.rows[self.by_row]


class IndexReader:
    """A loaded, immutable generation. Thread-safe for concurrent searches."""

    def __init__(self, path: Path, manifest: Manifest, settings: IndexSettings) -> None:
        faiss = faiss_module()

        self.path, self.manifest, self.settings = Path(path), manifest, settings
        self.base_meta = ItemMeta.load(self.path / META_FILE)
        """The metadata as built; :attr:`meta` is it with the store's later changes (:meth:`apply_live_meta`)."""
        self.meta = self.base_meta
        self.meta_version: int | None = None
        """The store's item-details version :attr:`meta` was patched to (None: not yet, the build's snapshot)."""
        self.dead = np.load(self.path / DEAD_FILE)
        self._ids = self.meta.item_ids
        self._parts: dict[str, list[_Part]] = {m: [] for m in manifest.modalities}
        offset = 0
        for seg in manifest.segments:
            sdir = self.path / seg["name"]
            for m, info in seg["modalities"].items():
                index = faiss.read_index(str(sdir / f"{m}.faiss"))
                if index.d != manifest.dim:  # an edited manifest: every query would be refused, or fail in FAISS
                    raise layout.IncompatibleArtifact(f"index generation at {path} is inconsistent: {seg['name']}/"
                                                      f"{m}.faiss holds {index.d}-d vectors, the manifest says "
                                                      f"{manifest.dim}; rebuild with `recsys index build`")
                vectors = np.load(sdir / f"{m}.vectors.npy", mmap_mode="r")
                rows = np.load(sdir / f"{m}.rows.npy") + offset
                self._parts[m].append(_Part(index, vectors, rows, bool(info["lossy"])))
            offset += seg["count"]
        if offset != len(self._ids) or len(self.dead) != offset:
            raise layout.IncompatibleArtifact(f"index generation at {path} is inconsistent: segments hold {offset} "
                                              f"rows, metadata {len(self._ids)}; rebuild with `recsys index build`")
        live = np.flatnonzero(~self.dead)
        self._row = dict(zip(self._ids[live].tolist(), live.tolist(), strict=True))

    # -- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, *, generation: str | None = None, encoder_id: str | None = None,
             dim: int | None = None, settings: IndexSettings | None = None) -> IndexReader:
        """Load ``generation`` (default: the current one) under ``root``. IncompatibleArtifact when it was built
        with another encoder id or dimension than the caller expects; NoIndex when nothing was built yet."""
        path = layout.generation_path(Path(root), generation)
        manifest = layout.read_manifest(path)
        layout.check_compatible(manifest, encoder_id=encoder_id, dim=dim, where=path)
        if settings is None:
            from recsys.config import IndexSettings

            settings = IndexSettings()
        layout.check_on_load(path, manifest, settings.verify_on_load_mb)
        try:
            return cls(path, manifest, settings)
        except (OSError, RuntimeError, ValueError, EOFError, SyntaxError, TokenError) as e:
            # FAISS, numpy and Parquet on a damaged file (a .npy header is parsed as Python: tokenize errors too)
            why = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
            raise IndexError_(f"index generation {manifest.generation_id} could not be read ({why}): a file of it is "
                              "missing or damaged. `recsys index verify` names it. "
                              f"{layout.damaged_remedy(path.parent.parent, manifest.generation_id)}") from e

    @property
    def generation_id(self) -> str:
        return self.manifest.generation_id

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def modalities(self) -> list[str]:
        return list(self.manifest.modalities)

    @property
    def item_ids(self) -> list[str]:
        """Ids of the items this generation serves (dead rows left out)."""
        return list(self._row)

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def apply_live_meta(self, changes: Iterable[Sequence[Any]], version: int | None) -> None:
        """Filter on the build's metadata patched with ``changes`` (:meth:`ItemMeta.patched`), read from the store
        at item-details ``version`` or later. One assignment: a concurrent search sees the old or the new metadata,
        never a mix; the version is set after it, so whoever sees the version sees that metadata."""
        self.meta = self.base_meta.patched(changes)
        self.meta_version = version

    # -- masks ----------------------------------------------------------------------------------------------
    def allowed_mask(self, filter: ItemFilter | None = None, exclude: Iterable[str] | None = None) -> np.ndarray | None:
        """bool per global row, or None when every row is allowed."""
        mask = None if not self.dead.any() else ~self.dead
        if filter is not None and not filter.is_empty:
            fm = filter.mask(self.meta)
            mask = fm if mask is None else mask & fm
        if exclude:
            rows = [r for r in (self._row.get(str(i)) for i in exclude) if r is not None]
            if rows:
                mask = np.ones(len(self._ids), bool) if mask is None else mask.copy()
                mask[rows] = False
        return mask

    def allowed_ids(self, filter: ItemFilter | None = None, exclude: Iterable[str] | None = None) -> list[str]:
        """Ids of the served items that pass ``filter`` and are not excluded."""
        mask = self.allowed_mask(filter, exclude)
        rows = np.flatnonzero(~self.dead if mask is None else mask)
        return self._ids[rows].tolist()

    def keep(self, item_ids: Sequence[str], filter: ItemFilter | None = None,
             exclude: Iterable[str] | None = None) -> list[str]:
        """The ids among ``item_ids`` (in their order) that this generation serves, pass ``filter`` and are not
        excluded: results found elsewhere (the lexical index) held to the rules of a vector search."""
        out = set(exclude or ())
        rows = np.array([r for r in (self._row.get(str(i)) for i in item_ids if i not in out) if r is not None],
                        dtype=np.int64)
        if filter is not None and not filter.is_empty and len(rows):
            rows = rows[filter.mask(self.meta.take(rows))]
        return self._ids[rows].tolist() if len(rows) else []

    # -- search ---------------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, exclude: Iterable[str] | None = None, *,
               modality: str = "fused", filter: ItemFilter | None = None) -> list[Hits]:
        """Top ``k`` (item_id, score) per query row, best first, by inner product with L2-normalised ``queries``
        ((m, d) or (d,) float32). Only items passing ``filter`` and not in ``exclude`` come back; fewer than ``k``
        only when fewer qualify."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValidationFailed(f"query vectors must be (m, {self.dim}), got {tuple(np.shape(queries))}")
        if modality not in self._parts:
            raise ValidationFailed(f"unknown modality {modality!r}; this index has {self.modalities}")
        if k <= 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        q = normalise(q)
        allowed = self.allowed_mask(filter, exclude)
        scores = np.full((len(q), 0), -np.inf, np.float32)
        rows = np.zeros((len(q), 0), np.int64)
        for part in self._parts[modality]:
            s, r = self._search_part(part, q, k, allowed)
            scores, rows = np.concatenate([scores, s], 1), np.concatenate([rows, r], 1)
        bad = ~np.isfinite(scores) & (rows >= 0) & (scores != -np.inf)
        if bad.any():  # a damaged vector file: its items are left out, never served with a NaN score
            self._warn_damaged(int(bad.sum()))
            rows = np.where(bad, -1, rows)
            scores = np.where(bad, -np.inf, scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        return [[(self._ids[r], float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
                for srow, rrow in zip(scores, rows, strict=True)]

    def _warn_damaged(self, n: int) -> None:
        if not getattr(self, "_damage_warned", False):
            self._damage_warned = True
            log.error("index generation %s returned %d non-finite score(s): its vector files are damaged. Those "
                      "items are left out; check with `recsys index verify`, rebuild with `recsys index build "
                      "--full` or roll back with `recsys index rollback`", self.generation_id, n)

    def search_one(self, query: np.ndarray, k: int, exclude: Iterable[str] | None = None, *,
                   modality: str = "fused", filter: ItemFilter | None = None) -> Hits:
        """:meth:`search` for one (d,) query."""
        return self.search(np.asarray(query).reshape(1, -1), k, exclude, modality=modality, filter=filter)[0]

    def _search_part(self, part: _Part, q: np.ndarray, k: int,
                     allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, global rows) (m, <=k) of one part; -inf / -1 where nothing qualifies."""
        faiss = faiss_module()

        local_ok = None if allowed is None else allowed[part.rows]
        n_ok = len(part.rows) if local_ok is None else int(local_ok.sum())
        if n_ok == 0:
            return np.full((len(q), 0), -np.inf, np.float32), np.zeros((len(q), 0), np.int64)
        if local_ok is not None and n_ok <= self.settings.exact_subset_max and not is_exact(part.index):
            # a Flat index is exact already: its own scan with the selector beats gathering the rows first
            return self._exact_subset(part, q, k, np.flatnonzero(local_ok))
        want = min(k, n_ok)
        kk = k * self.settings.rerank_factor if part.lossy else k
        bits = None if local_ok is None else np.packbits(local_ok, bitorder="little")
        sel = None if bits is None else faiss.IDSelectorBitmap(bits)
        ef = self.settings.ef_search
        for _ in range(RETRIES + 1):
            kk_eff = min(kk, len(part.rows))
            params = search_params(part.index, sel, ef_search=max(ef, kk_eff), nprobe=self.settings.nprobe)
            scores, pos = part.index.search(q, kk_eff, params=params)
            if part.lossy:
                scores, pos = rerank(part.vectors, q, pos, k)
            short = (pos[:, :k] >= 0).sum(1) < want
            if not short.any() or kk_eff >= len(part.rows):
                break
            kk, ef = kk * 4, ef * 4
        if short.any():
            log.debug("approximate search short for %d queries; finishing exactly", int(short.sum()))
            ok = np.flatnonzero(local_ok) if local_ok is not None else np.arange(len(part.rows))
            es, ep = self._exact_subset(part, q[short], k, ok, as_global=False)
            pad = max(0, k - scores.shape[1])
            scores = np.pad(scores[:, :k], ((0, 0), (0, pad)), constant_values=-np.inf)
            pos = np.pad(pos[:, :k], ((0, 0), (0, pad)), constant_values=-1)
            scores[short, : es.shape[1]], pos[short, : ep.shape[1]] = es, ep
        scores, pos = scores[:, :k], pos[:, :k]
        glob = np.where(pos >= 0, part.rows[np.maximum(pos, 0)], -1)
        return np.where(pos >= 0, scores, -np.inf).astype(np.float32), glob

    def _exact_subset(self, part: _Part, q: np.ndarray, k: int, positions: np.ndarray,
                      *, as_global: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the given index positions, from the stored vectors."""
        s, idx = exact_topk(_Gather(part.vectors, positions), q, min(k, len(positions)))
        pos = positions[idx]
        return s, (part.rows[pos] if as_global else pos)

    # -- stored vectors -------------------------------------------------------------------------------------
    def vectors_of(self, item_ids: Sequence[str], modality: str = "fused") -> tuple[np.ndarray, np.ndarray]:
        """Stored (L2-normalised) vectors of ``item_ids``: ((m, d) float32, found (m,) bool). Unknown items and
        items without this modality get a zero row and found=False."""
        if modality not in self._parts:
            raise ValidationFailed(f"unknown modality {modality!r}; this index has {self.modalities}")
        out = np.zeros((len(item_ids), self.dim), np.float32)
        found = np.zeros(len(item_ids), bool)
        rows = np.array([self._row.get(str(i), -1) for i in item_ids], dtype=np.int64)
        for part in self._parts[modality]:
            if not len(part.rows):
                continue
            ordered = part.sorted_rows
            at = np.minimum(np.searchsorted(ordered, rows), len(ordered) - 1)
            hit = (rows >= 0) & (ordered[at] == rows)
            pos = part.by_row[at]
            if hit.any():
                out[hit] = np.asarray(part.vectors[pos[hit]], dtype=np.float32)
                found |= hit
        return out, found

    def vector_of(self, item_id: str, modality: str = "fused") -> np.ndarray:
        """One stored vector; UnknownItem when the item is not served (or lacks the modality)."""
        v, ok = self.vectors_of([item_id], modality)
        if not ok[0]:
            what = "is not in the index" if item_id not in self._row else f"has no {modality} vector"
            raise UnknownItem(f"item {item_id!r} {what} (generation {self.generation_id})")
        return v[0]

    def similar(self, item_id: str, k: int, exclude: Iterable[str] | None = None, *, modality: str = "fused",
                filter: ItemFilter | None = None) -> Hits:
        """Items nearest to ``item_id`` (itself left out)."""
        v = self.vector_of(item_id, modality)
        if not np.isfinite(v).all():
            raise IndexError_(f"item {item_id!r} has a damaged {modality} vector in generation {self.generation_id}; "
                              "check with `recsys index verify`, then `recsys index build --full`")
        return self.search_one(v, k, {item_id, *(exclude or ())}, modality=modality, filter=filter)

    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {"generation_id": m.generation_id, "kind": m.kind, "encoder_id": m.encoder_id, "dim": m.dim,
                "items": len(self), "factory": m.factory, "recall_at_10": m.recall_at_10, "watermark": m.watermark,
                "created_at": m.created_at, "path": str(self.path)}


class _Gather:
    """A lazy row subset of a (memory-mapped) matrix: slicing it reads only those rows."""

    def __init__(self, base: np.ndarray, rows: np.ndarray) -> None:
        self.base, self.rows = base, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return np.asarray(self.base[self.rows[sl]], dtype=np.float32)
