"""Per-request context: one user's history at a time ``now`` with the statistics every stage reads.

The statistics are counted as of ``now`` (:class:`~recsys.ranking.stats.ItemStats`), so a training anchor sees
neither its own user's later events nor anyone else's: the same view a request at that time would have had.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.ranking.history import History, recency_weights
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats, first_of_runs, sequence_pairs


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
    ctx = Context(h, now, rr, w, stats.pop_at(now), stats.users_at(now), stats.cooc_scores(rr, w, now),
                  stats.window_counts(now, 7.0), stats.window_counts(now, 30.0), stats.first_ts)
    own = (h.ts >= h.uncounted_from) & (h.ts < now)
    return _with_own_events(ctx, own, stats.window) if own.any() else ctx


def _with_own_events(ctx: Context, own: np.ndarray, window: int) -> Context:
    """``ctx`` with the shopper's own events that the statistics miss counted in, as training counts every
    shopper's earlier events: without them a newcomer's own purchases look never sold (copies: the statistics'
    arrays are shared by every request)."""
    h, now = ctx.h, ctx.now
    rows, ts = h.rows[own], h.ts[own]
    pop, first = ctx.pop.copy(), ctx.first_ts.copy()
    np.add.at(pop, rows, 1.0)
    np.minimum.at(first, rows, ts)
    users = ctx.users.copy()
    users[np.setdiff1d(rows, h.rows[~own])] += 1.0  # an item the statistics already count for this shopper: once
    trend7, trend30 = ctx.trend7.copy(), ctx.trend30.copy()
    np.add.at(trend7, rows[ts >= now - 7.0], 1.0)
    np.add.at(trend30, rows[ts >= now - 30.0], 1.0)
    cooc = ctx.cooc.copy()
    keep = first_of_runs(rows)
    i, j, _ = sequence_pairs(rows[keep], window)
    if len(i):  # the shopper's own pairs, weighted like the statistics' pairs by the recent rows' weights
        u, inv = np.unique(ctx.recent_rows, return_inverse=True)
        wsum = np.bincount(inv, weights=ctx.recent_w)
        at = np.minimum(np.searchsorted(u, i), len(u) - 1)
        hit = u[at] == i
        np.add.at(cooc, j[hit], wsum[at[hit]])
    return Context(h, now, ctx.recent_rows, ctx.recent_w, pop, users, cooc, trend7, trend30, first)
