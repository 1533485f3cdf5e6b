"""Per-request context: one user's history at a time ``now`` with the statistics every stage reads.

Training passes a :class:`Correction` so a user's own later events never leak into the statistics seen at an
earlier anchor (the same user's future purchases would otherwise inflate popularity and co-occurrence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.ranking.history import History, recency_weights
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats, _dedup_consecutive, sequence_pairs


@dataclass
class Correction:
    """A training user's events at or after the anchor: removed from the statistics seen at the anchor."""

    future_rows: np.ndarray
    full_rows: np.ndarray
    """The user's whole training sequence (rows), whose co-occurrence pairs are in the fitted statistics."""


@dataclass
class Context:
    """What every stage needs about one (history, now): corrected statistics and recency weights."""

    h: History
    now: float
    recent_rows: np.ndarray
    recent_w: np.ndarray
    pop: np.ndarray
    users: np.ndarray
    cooc: np.ndarray
    trend7: np.ndarray
    trend30: np.ndarray
    first_ts: np.ndarray


def make_context(h: History, now: float, stats: ItemStats, p: RankingParams,
                 correction: Correction | None = None) -> Context:
    lo = max(0, len(h) - p.recent)
    rr, rts = h.rows[lo:], h.ts[lo:]
    w = recency_weights(rts, now, p.half_life_days) + 1e-3
    pop, users = stats.pop, stats.users
    cooc = stats.cooc_scores(rr, w)
    if correction is not None and len(correction.future_rows):
        n = len(stats.ids)
        pop = pop - np.bincount(correction.future_rows, minlength=n)
        fut_only = np.setdiff1d(np.unique(correction.future_rows), h.rows)
        users = users.copy()
        users[fut_only] -= 1
        cooc = cooc - _own_cooc(correction.full_rows, rr, w, stats.window, n) + _own_cooc(h.rows, rr, w,
                                                                                         stats.window, n)
        pop = np.maximum(pop, 0)
        cooc = np.maximum(cooc, 0)
    return Context(h, now, rr, w, pop, users, cooc, stats.window_counts(now, 7.0), stats.window_counts(now, 30.0),
                   stats.first_ts)


def _own_cooc(seq: np.ndarray, query: np.ndarray, w: np.ndarray, window: int, n: int) -> np.ndarray:
    i, j = sequence_pairs(_dedup_consecutive(seq), window)
    if not len(i):
        return np.zeros(n)
    m = sp.csr_matrix((np.ones(len(i), np.float32), (i, j)), shape=(n, n))
    q = sp.csr_matrix((w.astype(np.float32), (np.zeros(len(query), np.int64), query)), shape=(1, n))
    return np.asarray((q @ m).todense()).ravel()
