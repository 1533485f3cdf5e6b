"""Per-request context: one user's history at a time ``now`` with the statistics every stage reads.

The statistics are counted as of ``now`` (:class:`~recsys.ranking.stats.ItemStats`), so a training anchor sees
neither its own user's later events nor anyone else's: the same view a request at that time would have had.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.ranking.history import History, recency_weights
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats


@dataclass
class Context:
    """What every stage needs about one (history, now): statistics as of now and recency weights."""

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


def make_context(h: History, now: float, stats: ItemStats, p: RankingParams) -> Context:
    lo = max(0, len(h) - p.recent)
    rr, rts = h.rows[lo:], h.ts[lo:]
    w = recency_weights(rts, now, p.half_life_days) + 1e-3
    return Context(h, now, rr, w, stats.pop_at(now), stats.users_at(now), stats.cooc_scores(rr, w, now),
                   stats.window_counts(now, 7.0), stats.window_counts(now, 30.0), stats.first_ts)
