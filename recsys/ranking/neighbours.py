"""Top-k by score with ties broken by row, and each item's nearest items in one space, kept once computed.

The ``similar`` source ranks the catalogue by the maximum similarity to a user's latest items: a product of those
items with every item vector on each request (10 x 17,000 x 384 on H&M, ~5 ms of a core). The top k of a maximum
over rows is the top k of the union of each row's own top k (an item in the overall top k is in the top k of the row
where its maximum is), so :class:`Neighbours` keeps each item's ``K`` best once computed and a request merges at most
ten short lists. The result is the exact product's (tested) up to float rounding.

A list does not depend on the product that found it: a product of one row and one of a block of rows may differ in
the last bit (BLAS sums in another order), which swapped near-tied items, so the server (lists computed ahead in
blocks) and the CLI (on first sight, one row or a request's few) gave other candidates, and other lists, for the
same request. The float32 product only shortlists; the shortlist's similarities are summed again in float64 row by
row (:func:`exact_top`), and those decide the order and are kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.lru import LRU

NEIGHBOURS_K = 256
"""Neighbours kept per item: requests asking for more (a heavily filtered one) take the exact product."""
NEIGHBOURS_CACHED = 10_000
"""Items whose neighbour lists are kept (3 KB each) when computed on first use."""
WARM_BLOCK = 256
"""Rows per product when every list is computed ahead (:meth:`Neighbours.warm`): 256 x 17,000 scores, 17 MB."""


def top_k(s: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest finite values of ``s``, best first; equal values by the lower index."""
    k = min(k, len(s))
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-s, k - 1)[:k]
    cut = s[part].min()
    # which of several values equal to the k-th get in is the partition's choice: take the lowest indices instead
    above, tied = np.flatnonzero(s > cut), np.flatnonzero(s == cut)
    top = np.r_[above, tied[: k - len(above)]]
    top = top[np.lexsort((top, -s[top]))]
    return top[np.isfinite(s[top])]


SHORTLIST_MARGIN = 1e-4
"""Rows within this of the k-th float32 similarity are summed again in float64: a float32 product of unit vectors
errs by about 1e-7 (at most ~d x 6e-8), so no row of the exact top k is left out."""


def exact_top(vectors: np.ndarray, row: int, s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, similarities) of the k rows most similar to ``row``, best first, equal values by the lower row: ``s``
    (the row's float32 product with ``vectors``, from any product) shortlists, and the shortlist's similarities are
    summed in float64 for each row alone, so the answer is the same whatever product ``s`` came from."""
    finite = np.isfinite(s)
    k = min(k, int(finite.sum()))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    cut = np.partition(np.where(finite, s, -np.inf), len(s) - k)[len(s) - k]
    near = np.flatnonzero(finite & (s >= cut - SHORTLIST_MARGIN))
    q = vectors[row].astype(np.float64)
    # one row's sum at a time (no shape in it), in chunks: a zero or constant vector shortlists every row
    exact = np.concatenate([(vectors[near[i: i + 4096]].astype(np.float64) * q).sum(axis=1)
                            for i in range(0, len(near), 4096)])
    keep = np.isfinite(exact)
    near, exact = near[keep], exact[keep]
    order = np.lexsort((near, -exact))[:k]
    return near[order], exact[order].astype(np.float32)


class Neighbours:
    """Each row's ``NEIGHBOURS_K`` most similar rows of ``vectors`` (itself included), computed on first use."""

    def __init__(self, vectors: np.ndarray, size: int = NEIGHBOURS_CACHED) -> None:
        self.vectors = vectors
        self.k = min(NEIGHBOURS_K, len(vectors))
        self._lists: LRU[tuple[np.ndarray, np.ndarray]] = LRU(size)
        self._warm: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        """Every row's list computed ahead (:meth:`warm`): (rows (n, k) int32, similarities, done per row)."""

    def __getstate__(self) -> tuple[np.ndarray, int]:  # a copy starts with no lists (the LRU holds a lock)
        return self.vectors, self._lists.size

    def __setstate__(self, state: tuple[np.ndarray, int]) -> None:
        self.vectors, size = state
        self.k = min(NEIGHBOURS_K, len(self.vectors))
        self._lists = LRU(size)
        self._warm = None

    def of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, similarities) of ``row``'s neighbours, best first."""
        warm = self._warm
        if warm is not None and warm[2][row]:
            return warm[0][row].astype(np.int64), warm[1][row]
        hit = self._lists.get(row)
        return hit if hit is not None else self.prefetch([row])[row]

    def _kept(self, row: int) -> bool:
        warm = self._warm
        return (warm is not None and bool(warm[2][row])) or self._lists.has(row)

    def prefetch(self, rows: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Compute (and keep) the lists of those of ``rows`` not kept yet, in one product: the catalogue is read
        once for all of them. Returns the lists computed."""
        missing = [r for r in dict.fromkeys(rows) if not self._kept(r)]
        made: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if missing:
            v = self.vectors
            for r, s in zip(missing, v[missing] @ v.T, strict=True):
                made[r] = exact_top(v, r, s, self.k)
                self._lists.put(r, made[r])
        return made

    def warm(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Compute every row's list ahead, a block of rows per product, so that no request pays for a list on
        first sight (right after a new generation a miss on H&M cost twice a steady one). Lists already made stay
        as they are; requests keep being answered meanwhile (a row is used once its whole list is written).
        ``stop()`` is asked between blocks (a newer generation replaced this one). Returns the lists computed."""
        n, v = len(self.vectors), self.vectors
        if self._warm is None:
            self._warm = (np.zeros((n, self.k), np.int32), np.zeros((n, self.k), np.float32), np.zeros(n, bool))
        rows, sims, done = self._warm
        made = 0
        for start in range(0, n, WARM_BLOCK):
            if stop():
                break
            block = [r for r in range(start, min(start + WARM_BLOCK, n)) if not done[r]]
            if not block:
                continue
            for r, s in zip(block, v[block] @ v.T, strict=True):
                old = self._lists.get(r)  # one made on first sight: the same list (exact_top), kept
                top, top_s = old if old is not None else exact_top(v, r, s, self.k)
                if len(top) < self.k:  # non-finite scores (a damaged vector) left it short: kept as a list
                    self._lists.put(r, (top, top_s))
                    continue
                rows[r], sims[r] = top, top_s
                done[r] = True  # after the list: a request reads a row only once it is whole
                made += old is None
        if done.all():
            self._lists.clear()  # every list is in the arrays now
        return made

    @property
    def warmed(self) -> float:
        """Share of the rows whose lists were computed ahead."""
        warm = self._warm
        return float(warm[2].mean()) if warm is not None and len(warm[2]) else 0.0

    def top_of_max(self, latest: np.ndarray, k: int) -> np.ndarray | None:
        """Rows by their maximum similarity to any of ``latest``, best first (ties by the lower row): the same as
        :func:`top_k` over ``(vectors[latest] @ vectors.T).max(0)``. None when k exceeds the kept lists."""
        if k > self.k:
            return None
        self.prefetch([int(r) for r in latest])
        lists = [self.of(int(r)) for r in latest]
        # an item of the top k is within the first k of the list holding its maximum (whatever precedes it there
        # precedes it overall): the lists' heads give the same answer, with 2.5x less to sort at k = 100
        rows = np.concatenate([r[:k] for r, _ in lists])
        sims = np.concatenate([s[:k] for _, s in lists])
        order = np.lexsort((rows, -sims))  # best first, so each row's first occurrence is its maximum
        rows = rows[order]
        _, first = np.unique(rows, return_index=True)
        return rows[np.sort(first)][:k]
