"""The three reference recommenders of DESIGN.md section 4, fitted on a split's training events only.

Each is a callable ``(user_id, history, k) -> list[str]`` like every recommender the evaluator runs:

- :class:`Popular`: items by number of distinct training users who interacted with them (ties: more events, then
  more recent), optionally only within ``window_days`` before the request time.
- :class:`ItemCooccurrence`: item-item cosine over the training user-item matrix (binary),
  ``sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|)``; a user's score for j sums sim(h, j) over their distinct history
  items. Lists are topped up with :class:`Popular` when fewer than k items score above zero.
- :class:`ContentKNN`: max cosine similarity of each catalogue item to the user's last 10 distinct history items,
  from item vectors (n, d) float32 given by the caller; works for items nobody has interacted with.

``exclude_seen`` drops the user's history items from the list (right for MovieLens, where nobody rates a movie
twice; H&M customers do buy again, see :func:`make_baselines`). Negative events (dislikes) are not interactions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import ValidationFailed
from recsys.evaluation.splits import NEGATIVE_TYPES, Split


def positives(events: pd.DataFrame) -> pd.DataFrame:
    """Events that count as interactions (all but dislikes)."""
    return events[~events["type"].isin(NEGATIVE_TYPES)] if len(events) else events


def _top(scores: np.ndarray, k: int, banned: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest finite scores, best first (stable for ties: lower index first)."""
    s = scores.astype(np.float64, copy=True)
    if banned is not None and len(banned):
        s[banned] = -np.inf
    n_ok = int(np.isfinite(s).sum())
    k = min(k, n_ok)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
    return part[np.lexsort((part, -s[part]))]


class Popular:
    """Most popular training items (distinct users), the same list for everyone."""

    name = "popular"

    def __init__(self, train: pd.DataFrame, *, exclude_seen: bool = False, window_days: float | None = None) -> None:
        pos = positives(train)
        self.exclude_seen = exclude_seen
        self.window_days = window_days
        self._events = pos[["user_id", "item_id", "ts"]].copy() if window_days is not None else None
        self.ranking = self._rank(pos)

    @staticmethod
    def _rank(pos: pd.DataFrame) -> list[str]:
        if not len(pos):
            return []
        g = pos.groupby("item_id").agg(users=("user_id", "nunique"), events=("user_id", "size"), last=("ts", "max"))
        g = g.sort_values(["users", "events", "last"], ascending=False, kind="stable")
        return [str(i) for i in g.index]

    def __call__(self, user_id: str, history: pd.DataFrame, k: int) -> list[str]:
        ranking = self.ranking
        if self._events is not None and len(history) and self.window_days is not None:
            now = pd.Timestamp(history["ts"].max())
            ev = self._events
            recent = ev[(ev["ts"] < now + pd.Timedelta(days=1))
                        & (ev["ts"] >= now - pd.Timedelta(days=self.window_days))]
            ranking = self._rank(recent) + ranking
        seen = set(history["item_id"].astype(str)) if self.exclude_seen and len(history) else set()
        out: list[str] = []
        for item in ranking:
            if item not in seen and item not in out:
                out.append(item)
                if len(out) == k:
                    break
        return out


class ItemCooccurrence:
    """Item-item cosine co-occurrence from training histories, topped up with popular items."""

    name = "item_cooccurrence"

    def __init__(self, train: pd.DataFrame, *, exclude_seen: bool = False, fallback: Popular | None = None) -> None:
        pos = positives(train)[["user_id", "item_id"]].drop_duplicates()
        ucode, _ = pd.factorize(pos["user_id"])
        icode, items = pd.factorize(pos["item_id"].astype(str))
        self.items = np.asarray(items, dtype=object)
        self._row = {str(i): r for r, i in enumerate(self.items)}
        n_u, n_i = int(ucode.max(initial=-1)) + 1, len(self.items)
        x = sp.csr_matrix((np.ones(len(pos), np.float32), (ucode, icode)), shape=(n_u, n_i))
        c = (x.T @ x).tocsr()
        deg = np.asarray(c.diagonal(), dtype=np.float64)
        c.setdiag(0)
        c.eliminate_zeros()
        inv = sp.diags(1.0 / np.sqrt(np.maximum(deg, 1.0)))
        self.sim = (inv @ c @ inv).tocsr().astype(np.float32)
        """(n_items, n_items) cosine similarity, zero diagonal."""
        self.exclude_seen = exclude_seen
        self.fallback = fallback or Popular(train)

    def scores(self, history: pd.DataFrame) -> np.ndarray:
        """Summed similarity of every training item to the history's distinct items, shape (n_items,)."""
        rows = sorted({self._row[i] for i in history["item_id"].astype(str) if i in self._row})
        if not rows:
            return np.zeros(len(self.items), np.float64)
        return np.asarray(self.sim[rows].sum(axis=0), dtype=np.float64).ravel()

    def __call__(self, user_id: str, history: pd.DataFrame, k: int) -> list[str]:
        s = self.scores(history)
        s[s <= 0] = -np.inf
        seen = set(history["item_id"].astype(str)) if len(history) else set()
        banned = np.array([self._row[i] for i in seen if i in self._row], dtype=np.int64) \
            if self.exclude_seen else None
        out = [str(self.items[j]) for j in _top(s, k, banned)]
        if len(out) < k:
            skip = set(out) | (seen if self.exclude_seen else set())
            for item in self.fallback.ranking:
                if item not in skip:
                    out.append(item)
                    skip.add(item)
                    if len(out) == k:
                        break
        return out


class ContentKNN:
    """Max cosine similarity to the last ``last_n`` distinct history items, over item vectors."""

    name = "content_knn"

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, *, last_n: int = 10,
                 exclude_seen: bool = True) -> None:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[0] != len(item_ids):
            raise ValidationFailed(f"content kNN needs vectors of shape (n_items, d) = ({len(item_ids)}, d), "
                                   f"got {v.shape}")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.vectors = v / np.where(norms > 0, norms, 1.0)
        self.items = np.asarray([str(i) for i in item_ids], dtype=object)
        self._row = {i: r for r, i in enumerate(self.items)}
        self.last_n = last_n
        self.exclude_seen = exclude_seen

    def __call__(self, user_id: str, history: pd.DataFrame, k: int) -> list[str]:
        ids = history["item_id"].astype(str).tolist() if len(history) else []
        known = [self._row[i] for i in ids if i in self._row]
        recent = list(dict.fromkeys(reversed(known)))[: self.last_n]
        if not recent:
            return []
        s = (self.vectors[recent] @ self.vectors.T).max(axis=0)
        banned = np.array(sorted(set(known)), dtype=np.int64) if self.exclude_seen else None
        return [str(self.items[j]) for j in _top(s, k, banned)]


def make_baselines(split: Split, item_ids: Sequence[str] | None = None, vectors: np.ndarray | None = None, *,
                   exclude_seen: bool | None = None) -> dict[str, Popular | ItemCooccurrence | ContentKNN]:
    """The three baselines fitted on ``split.train``; content kNN only when vectors are given.

    ``exclude_seen`` defaults to True for ``last_interaction`` (MovieLens: no re-ratings) and False for ``last_day``
    (repurchases are real targets; a baseline blind to them would be a straw man). Content kNN leaves the history
    items out unless ``exclude_seen=False`` is passed: its answer is their neighbours, not the items themselves.
    """
    ex = split.protocol == "last_interaction" if exclude_seen is None else exclude_seen
    pop = Popular(split.train, exclude_seen=ex)
    out: dict[str, Popular | ItemCooccurrence | ContentKNN] = {
        "popular": pop,
        "item_cooccurrence": ItemCooccurrence(split.train, exclude_seen=ex, fallback=pop),
    }
    if vectors is not None and item_ids is not None:
        out["content_knn"] = ContentKNN(item_ids, vectors, exclude_seen=True if exclude_seen is None else ex)
    return out
