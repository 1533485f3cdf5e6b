"""Top-K ranking metrics, per user and averaged over users.

For one user with recommended list ``r`` (deduplicated, cut to K) and distinct target set ``T``:

- recall@K   = |r ∩ T| / |T|
- NDCG@K     = DCG / IDCG, DCG = sum over hit positions i (1-based) of 1 / log2(i + 1), IDCG the same for
  min(|T|, K) hits at the top
- hit rate@K = 1 if r ∩ T is non-empty
- MRR@K      = 1 / (position of the first hit), 0 when there is none
- coverage@K = distinct items over all users' lists / catalogue size (a property of the whole run)

Every per-user metric is averaged with equal weight per user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("recall", "ndcg", "hit_rate", "mrr")


@dataclass(frozen=True)
class PerUser:
    """Per-user metric arrays, shape (n_users,) float64, aligned with the input order."""

    recall: np.ndarray
    ndcg: np.ndarray
    hit_rate: np.ndarray
    mrr: np.ndarray

    def mean(self, mask: np.ndarray | None = None) -> dict[str, float | None]:
        """Averages over all users, or over those where ``mask`` is true (None values when there are none)."""
        out: dict[str, float | None] = {}
        for name in METRICS:
            v = getattr(self, name)
            v = v if mask is None else v[mask]
            out[name] = round(float(v.mean()), 6) if len(v) else None
        return out


def dedupe(recs: Sequence[str], k: int) -> list[str]:
    """The first ``k`` distinct ids of ``recs``, in order."""
    return list(dict.fromkeys(str(r) for r in recs))[:k]


def hit_matrix(recs: Sequence[Sequence[str]], targets: Sequence[Sequence[str]], k: int) -> np.ndarray:
    """Boolean (n_users, k): whether the item at each position of each user's list is a target."""
    out = np.zeros((len(recs), k), dtype=bool)
    for u, (r, t) in enumerate(zip(recs, targets, strict=True)):
        ts = set(map(str, t))
        for i, item in enumerate(dedupe(r, k)):
            out[u, i] = item in ts
    return out


def per_user(recs: Sequence[Sequence[str]], targets: Sequence[Sequence[str]], k: int) -> PerUser:
    """Per-user recall, NDCG, hit and reciprocal rank at ``k`` (users with no targets score 0)."""
    hits = hit_matrix(recs, targets, k)
    n_t = np.array([len(set(map(str, t))) for t in targets], dtype=np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    ideal = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal[np.minimum(n_t, k).astype(int)]
    dcg = hits @ disc
    n_hit = hits.sum(axis=1).astype(np.float64)
    any_hit = hits.any(axis=1)
    first = np.argmax(hits, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n_t > 0, n_hit / np.maximum(n_t, 1), 0.0)
        ndcg = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)
    mrr = np.where(any_hit, 1.0 / (first + 1.0), 0.0)
    return PerUser(recall=recall, ndcg=ndcg, hit_rate=np.asarray(any_hit, dtype=np.float64), mrr=mrr)


def coverage(recs: Sequence[Sequence[str]], k: int, catalogue_size: int) -> float:
    """Share of the catalogue that appears in at least one user's top-``k``."""
    if catalogue_size <= 0:
        return 0.0
    seen = {item for r in recs for item in dedupe(r, k)}
    return round(len(seen) / catalogue_size, 6)


def summarize(recs: Sequence[Sequence[str]], targets: Sequence[Sequence[str]], k: int,
              catalogue_size: int) -> dict[str, float | None]:
    """recall, ndcg, hit_rate, mrr (user averages) and coverage, as in the evaluation JSON."""
    out = per_user(recs, targets, k).mean()
    out["coverage"] = coverage(recs, k, catalogue_size)
    return out
