"""Items alike by the words of their names: the lexical side of the ``hybrid`` candidate source.

The store's keyword index (FTS5 / PostgreSQL full-text search, :mod:`recsys.store.lexical`) answers a shopper's typed
query; for recommendations the query is the shopper's own latest items, and one database query per item per request
would cost more than the whole ranking. So the ranker keeps, per catalogue, the same kind of score in memory: BM25
weights of each item's name words as a sparse unit row, the likeness of two items the cosine of their rows. Rare words
carry the weight ("Tilly", "Leopard", a collection or print name), the common ones ("top", "1p") almost none. The
``hybrid`` source fuses these lexical neighbours with the content vectors' by reciprocal-rank fusion, as text search
fuses keyword and vector matches (:mod:`recsys.index.hybrid`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from recsys.index.hybrid import RRF_K
from recsys.lru import LRU
from recsys.ranking.neighbours import NEIGHBOURS_CACHED
from recsys.store.lexical import FOLDS

_WORD = re.compile(r"[^\W_]{2,}")
_FOLD = str.maketrans(FOLDS)


def name_words(name: str | None) -> list[str]:
    """Lower-cased words of two letters or digits or more, composed (NFC) and folded as the store's keyword index
    folds them (:data:`recsys.store.lexical.FOLDS`), so "Straße" and "STRASSE", or a decomposed (NFD) and a composed
    "Crêpe", are one word."""
    return _WORD.findall(unicodedata.normalize("NFC", name or "").translate(_FOLD).lower())


class NameIndex:
    """BM25-weighted unit rows of the items' name words, aligned with the ranker's table rows."""

    def __init__(self, names: Sequence[str | None], k1: float = 1.2, b: float = 0.75) -> None:
        vocab: dict[str, int] = {}
        indptr, indices, tf = [0], list[int](), list[int]()
        for name in names:
            counts: dict[int, int] = {}
            for w in name_words(name):
                j = vocab.setdefault(w, len(vocab))
                counts[j] = counts.get(j, 0) + 1
            indices.extend(counts)
            tf.extend(counts.values())
            indptr.append(len(indices))
        n = len(names)
        x = sparse.csr_matrix((np.asarray(tf, np.float32), np.asarray(indices, np.int64), np.asarray(indptr)),
                              shape=(n, max(len(vocab), 1)))
        df = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float32)
        idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0)
        lengths = np.diff(x.indptr).astype(np.float32)
        norm_len = k1 * (1 - b + b * lengths / max(float(lengths.mean()), 1e-9))
        row_len = np.repeat(norm_len, np.diff(x.indptr))
        x.data = x.data * (k1 + 1) / (x.data + row_len) * idf[x.indices]
        row_norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        self.rows: sparse.csr_matrix = sparse.diags(1.0 / np.maximum(row_norm, 1e-9)).dot(x).tocsr().astype(np.float32)
        self._t = self.rows.T.tocsr()
        self.words = len(vocab)
        self._lists: LRU[np.ndarray] = LRU(NEIGHBOURS_CACHED)

    def __getstate__(self) -> dict[str, object]:  # a copy starts with no lists (the LRU holds a lock)
        return {k: v for k, v in self.__dict__.items() if k != "_lists"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lists = LRU(NEIGHBOURS_CACHED)

    @classmethod
    def of(cls, names: Sequence[str | None]) -> NameIndex | None:
        """The index, or None when no item has a name word (nothing lexical to say)."""
        idx = cls(names)
        return idx if idx.rows.nnz else None

    def likeness(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) cosine of the rows' name words."""
        return np.asarray((self.rows[a] @ self.rows[b].T).todense(), dtype=np.float32)

    def nearest(self, rows: Sequence[int], k: int) -> dict[int, np.ndarray]:
        """Per row: up to ``k`` rows sharing a name word with it, most alike first (itself among them), ties by the
        lower row. One sparse product for all rows; each list is kept (LRU), as the vector neighbours are."""
        out = {r: hit for r in dict.fromkeys(rows) if (hit := self._lists.get((r, k))) is not None}
        missing = [r for r in dict.fromkeys(rows) if r not in out]
        if missing:
            s = self.rows[missing] @ self._t
            for i, r in enumerate(missing):
                lo, hi = s.indptr[i], s.indptr[i + 1]
                cols, vals = s.indices[lo:hi], s.data[lo:hi]
                order = np.lexsort((cols, -vals))[:k]
                out[r] = cols[order].astype(np.int64)
                self._lists.put((r, k), out[r])
        return out


def fuse_ranked(lists: Sequence[tuple[np.ndarray, float]], k: int) -> np.ndarray:
    """Reciprocal-rank fusion of row lists, each with its weight: the ``k`` best rows by ``sum w / (RRF_K + rank)``
    (rank from 1), ties by first appearance."""
    lists = [(np.asarray(r, np.int64), w) for r, w in lists if len(r)]
    if not lists:
        return np.zeros(0, np.int64)
    rows = np.concatenate([r for r, _ in lists])
    credit = np.concatenate([w / (RRF_K + np.arange(1, len(r) + 1, dtype=np.float64)) for r, w in lists])
    uniq, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    score = np.bincount(inverse, weights=credit, minlength=len(uniq))
    return uniq[np.lexsort((first, -score))][:k]
