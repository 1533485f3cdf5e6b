"""FAISS index construction: the type chosen by catalogue size, or a factory string (DESIGN.md decision 6).

All indexes use inner product on L2-normalised vectors (cosine). Below ``exact_threshold`` items the index is exact
(``Flat``); above it HNSW; from ``ivf_threshold`` (millions) IVF-PQ, whose lossy codes are re-ranked at query time
from the full vectors kept on disk.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.errors import ValidationFailed

if TYPE_CHECKING:
    from recsys.config import IndexSettings

log = logging.getLogger(__name__)


def faiss_module() -> Any:
    """faiss, imported on first use (it is heavy) and typed loosely (its SWIG stubs are incomplete).

    OpenMP threads default to sleeping, not spinning, while they wait: on a machine shared with other processes
    spinning threads slowed FAISS training and search down 100x (measured: 12 s vs 0.05 s for a small IVF-PQ).
    Set ``OMP_WAIT_POLICY`` yourself (before the first search) to choose otherwise.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    return faiss


_IO_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
              errno.ENOENT, errno.EMFILE)


def write_index(index: Any, path: Path) -> None:
    """``faiss.write_index`` to ``path``, its I/O failures raised as the OSError they are (FAISS raises RuntimeError
    naming the OS error: "write error in PATH: 2006995 != 2048000 (No space left on device)", "could not open PATH
    for writing: Permission denied"), so a full disk or a file-size limit is handled like any other write. Other
    RuntimeErrors (an index type FAISS cannot serialise) stay as they are."""
    try:
        faiss_module().write_index(index, str(path))
    except RuntimeError as e:
        text = str(e)
        code = next((c for c in _IO_ERRNOS if os.strerror(c) in text), None)
        if code is None and not any(w in text for w in ("write error", "could not open")):
            raise
        why = os.strerror(code) if code is not None else f"FAISS: {text.strip().splitlines()[-1]}"
        raise OSError(code or errno.EIO, why, str(path)) from e


class TooFewToTrain(ValidationFailed):
    """FAISS refused to train an index because a k-means in it (IVF lists, PQ or OPQ centroids) has more centroids
    than there are training vectors."""


def choose_factory(n: int, d: int, settings: IndexSettings) -> str:
    """The factory string for ``n`` vectors of dimension ``d``: the configured one, or one chosen by size."""
    return settings.factory or size_factory(n, d, settings)


def size_factory(n: int, d: int, settings: IndexSettings) -> str:
    """The factory string chosen by size for ``n`` vectors of dimension ``d``, whatever factory is configured."""
    if n < settings.exact_threshold:
        return "Flat"
    if n < settings.ivf_threshold:
        return f"HNSW{settings.hnsw_m},Flat"
    # ~4 sqrt(n) lists, but no more than the training sample can fit (64 points a list): k-means on fewer leaves
    # lists that split neighbours badly (measured: IVF4096 on a 100k sample lost recall to IVF1024 at 1M items)
    nlist = min(1 << round(math.log2(4 * math.sqrt(n))), 1 << int(math.log2(max(settings.train_sample, 1) / 64)))
    code = pq_code(d)
    # OPQ rotates the vectors so each sub-quantizer gets an even share of the variance: at 1M x 384 on clustered
    # vectors it lifted recall@10 from 0.70 to 0.78 at the same 94 bytes per item (docs/performance-log.md)
    return f"OPQ{code.split('x')[0]},IVF{max(16, nlist)},PQ{code}"


def pq_code(d: int, max_bytes: int = 88) -> str:
    """PQ layout ``MxBITS`` with the most code bits in ``max_bytes`` (88 + 8 bytes of id keeps an item under 100
    bytes in memory): sub-quantizers of 4 to 8 bits over at least 2 dimensions each; 384 -> 96x7, 512 -> 128x5."""
    best = (0, 0, 0)
    for m in range(1, d // 2 + 1):
        if d % m:
            continue
        for bits in range(8, 3, -1):
            if m * bits <= max_bytes * 8:
                best = max(best, (m * bits, bits, m))
                break
    _, bits, m = best
    return f"{m}x{bits}" if bits != 8 else f"{m}"


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); float32, C-contiguous."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def make_index(vectors: np.ndarray, factory: str, settings: IndexSettings, *, seed: int = 0) -> Any:
    """Build and fill a FAISS index over ``vectors`` (n, d) float32, training it on a sample when needed."""
    n, d = vectors.shape
    index = new_index(d, factory, settings)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = vectors if n <= settings.train_sample else vectors[np.sort(rng.choice(n, settings.train_sample,
                                                                                        replace=False))]
        train_index(index, sample, factory)
    try:
        for start in range(0, n, 65536):
            index.add(np.ascontiguousarray(vectors[start:start + 65536]))
    except RuntimeError as e:  # e.g. "IDMap,Flat": FAISS refuses add() without ids, which recsys keeps apart
        raise ValidationFailed(f"FAISS index {factory!r} cannot be filled ({str(e).splitlines()[-1]}); recsys keeps "
                               "ids itself: use a factory without IDMap, e.g. 'Flat' or 'HNSW32,Flat'") from None
    return index


def graph_order(index: Any) -> np.ndarray | None:
    """A breadth-first order of an HNSW index's base-layer graph from its entry point (``None`` for other index
    types): ``order[i]`` is the current position of the node that should sit at position ``i``. Laid out in this
    order (:func:`relayout`), a search reads neighbouring vectors from nearby memory instead of anywhere in a
    gigabyte of vectors."""
    faiss = faiss_module()

    hnsw_index = _find(index, faiss.IndexHNSW)
    n = int(index.ntotal)
    if hnsw_index is None or n < 2:
        return None
    hnsw = hnsw_index.hnsw
    links = faiss.vector_to_array(hnsw.neighbors)
    starts = faiss.vector_to_array(hnsw.offsets)[:-1].astype(np.int64)
    width = int(faiss.vector_to_array(hnsw.cum_nneighbor_per_level)[1])
    cols = np.arange(width)[None, :]
    # (n, 2M) base-layer links, -1 padded; gathered in blocks so the int64 index arrays stay small
    base = np.concatenate([links[starts[i:i + 65536, None] + cols] for i in range(0, n, 65536)])
    seen = np.zeros(n, bool)
    order = np.empty(n, np.int64)
    frontier = np.array([max(int(hnsw.entry_point), 0)])
    seen[frontier] = True
    order[0], filled = frontier[0], 1
    while filled < n:
        if not len(frontier):  # a part the entry point does not reach: start again from its first node
            frontier = np.flatnonzero(~seen)[:1]
            seen[frontier] = True
            order[filled], filled = frontier[0], filled + 1
            continue
        nxt = base[frontier].ravel()
        nxt = nxt[nxt >= 0]
        nxt = nxt[~seen[nxt]]
        _, first = np.unique(nxt, return_index=True)
        nxt = nxt[np.sort(first)]  # each new node once, in the order it was reached
        seen[nxt] = True
        order[filled:filled + len(nxt)] = nxt
        filled += len(nxt)
        frontier = nxt
    return order


def relayout(index: Any, order: np.ndarray) -> bool:
    """Move the index's entries into ``order`` (from :func:`graph_order`): afterwards position ``i`` holds what was at
    ``order[i]``, so whatever maps positions to items must be permuted the same way. False (nothing moved) for
    storage FAISS cannot permute."""
    faiss = faiss_module()

    hnsw_index = _find(index, faiss.IndexHNSW)
    if hnsw_index is None:
        return False
    try:
        hnsw_index.permute_entries(np.ascontiguousarray(order, dtype=np.int64))
    except RuntimeError as e:  # FAISS permutes flat-code storage only
        log.info("HNSW index left in insertion order: %s", str(e).splitlines()[0])
        return False
    return True


def new_index(d: int, factory: str, settings: IndexSettings) -> Any:
    """An empty FAISS index for dimension ``d`` described by ``factory`` (inner product), not yet trained."""
    faiss = faiss_module()

    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValidationFailed(f"bad FAISS factory string {factory!r}: {str(e).splitlines()[0]}") from None
    hnsw = _find(index, faiss.IndexHNSW)
    if hnsw is not None:
        hnsw.hnsw.efConstruction = settings.ef_construction
    for cls in (faiss.IndexIVFPQ, faiss.IndexPQ):
        pq = _find(index, cls)
        if pq is not None:  # polysemous codes only help Hamming pre-filtering, which we do not use; slow to train
            pq.do_polysemous_training = False
    return index


_PROBE_DIMS = (384, 512, 768, 1024, 256, 128, 64)
"""Dimensions a factory string is parsed at before the vectors (so d) are known: common encoder widths, which the
usual PQ / OPQ sub-quantizer counts divide."""


def check_factory(factory: str, settings: IndexSettings) -> None:
    """Refuse a factory string FAISS cannot parse, or one recsys cannot fill (IDMap), before any vector is read: at
    scale reading them takes minutes and gigabytes. d is not known yet, so the string is parsed at common
    dimensions; a refusal that depends on d (PQ64 needs a multiple of 64) is left to the build, which knows d."""
    faiss = faiss_module()

    unparsable = None
    for d in _PROBE_DIMS:
        try:
            index = new_index(d, factory, settings)
        except ValidationFailed as e:
            unparsable = unparsable or (e if "could not parse" in e.message else None)
            continue
        if isinstance(index, faiss.IndexIDMap):
            raise ValidationFailed(f"FAISS index {factory!r} cannot be filled (FAISS wants ids with every vector); "
                                   "recsys keeps ids itself: use a factory without IDMap, e.g. 'Flat' or "
                                   "'HNSW32,Flat'")
        return
    if unparsable is not None:
        raise unparsable


def train_index(index: Any, sample: np.ndarray, factory: str = "") -> None:
    """Train ``index`` on ``sample`` (m, d) float32; a clear error when the sample is too small for it."""
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as e:
        said = str(e).splitlines()[-1]
        # FAISS's k-means check (Clustering::train): the one refusal that more vectors, or a smaller factory, cure
        few = "should be at least as large as number of clusters" in said
        raise (TooFewToTrain if few else ValidationFailed)(
            f"cannot train FAISS index {factory!r} on {len(sample)} vectors ({said}); "
            "use a smaller factory (fewer IVF lists / PQ centroids) or RECSYS_INDEX__FACTORY=Flat"
        ) from None


def is_exact(index: Any) -> bool:
    """True when the index stores the vectors exactly and scans them all (no re-ranking needed)."""
    faiss = faiss_module()

    return isinstance(index, faiss.IndexFlat)


def is_lossy(index: Any) -> bool:
    """True when the index scores with compressed codes (PQ, SQ...), so scores need re-ranking from full vectors."""
    faiss = faiss_module()

    inner = _find(index, faiss.IndexHNSW)
    if inner is not None:
        return not isinstance(faiss.downcast_index(inner.storage), faiss.IndexFlat)
    return not isinstance(index, faiss.IndexFlat) and not isinstance(index, faiss.IndexIVFFlat)


def search_params(index: Any, selector: Any | None, *, ef_search: int, nprobe: int) -> Any:
    """Per-call search parameters (thread-safe: the index itself is never modified while serving)."""
    faiss = faiss_module()

    if isinstance(index, faiss.IndexShards) and index.count():  # shards share one layout (recsys.index.shards)
        return search_params(faiss.downcast_index(index.at(0)), selector, ef_search=ef_search, nprobe=nprobe)
    if isinstance(index, faiss.IndexPreTransform):
        inner = search_params(faiss.downcast_index(index.index), selector, ef_search=ef_search, nprobe=nprobe)
        return faiss.SearchParametersPreTransform(index_params=inner)
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=ef_search)
    if isinstance(index, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe, index.nlist))
    return faiss.SearchParameters(sel=selector)


def _find(index: Any, cls: type) -> Any | None:
    faiss = faiss_module()

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        return _find(index.index, cls)
    return index if isinstance(index, cls) else None


def sampled_recall(index: Any, vectors: np.ndarray, settings: IndexSettings, *, k: int = 10,
                   samples: int = 200, seed: int = 0) -> float:
    """Recall@k of ``index`` against exact search, with ``samples`` stored vectors as queries (each query's own row
    counts: it is a neighbour like any other). Lossy indexes are measured with the re-ranking the reader does."""
    if is_exact(index) or len(vectors) == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    q = vectors[rng.choice(len(vectors), min(samples, len(vectors)), replace=False)]
    q = np.ascontiguousarray(q, dtype=np.float32)
    k = min(k, len(vectors))
    exact = exact_topk(vectors, q, k)[1]
    kk = k * settings.rerank_factor if is_lossy(index) else k
    _, got = index.search(q, min(kk, len(vectors)), params=search_params(index, None, ef_search=settings.ef_search,
                                                                          nprobe=settings.nprobe))
    if is_lossy(index):
        got = rerank(vectors, q, got, k)[1]
    hits = [len(set(e.tolist()) & set(g[:k].tolist())) for e, g in zip(exact, got, strict=True)]
    return float(np.sum(hits) / (k * len(q)))


def exact_topk(vectors: Any, queries: np.ndarray, k: int, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product, chunked over ``vectors`` (works on a memmap). Returns (scores, rows)."""
    m = len(queries)
    best_s = np.full((m, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((m, 0), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        s = queries @ np.asarray(vectors[start:start + chunk], dtype=np.float32).T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + start], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def rerank(vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores for a shortlist ``rows`` (m, s) (-1 = none) from full ``vectors`` (a memmap is fine);
    returns the top ``k`` (scores, rows) per query, -inf / -1 padded."""
    m, s = rows.shape
    valid = rows >= 0
    flat = np.unique(rows[valid])
    vec = np.asarray(vectors[flat], dtype=np.float32) if len(flat) else np.zeros((0, queries.shape[1]), np.float32)
    pos = np.searchsorted(flat, np.where(valid, rows, flat[0] if len(flat) else 0))
    scores = np.full((m, s), -np.inf, dtype=np.float32)
    for i in range(m):
        if valid[i].any():
            scores[i, valid[i]] = vec[pos[i, valid[i]]] @ queries[i]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out_s = np.take_along_axis(scores, order, 1)
    out_r = np.where(np.isfinite(out_s), np.take_along_axis(rows, order, 1), -1)
    return out_s, out_r
