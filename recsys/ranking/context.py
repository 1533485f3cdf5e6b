"""Per-request context: one user's history at a time ``now`` with the statistics every stage reads.

The statistics are counted as of ``now`` (:class:`~recsys.ranking.stats.ItemStats`), so a training anchor sees
neither its own user's later events nor anyone else's: the same view a request at that time would have had.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys.ranking.history import History, recency_weights
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats, first_of_runs, paid, sequence_pairs


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
    own_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """The shopper's events before ``now`` that the statistics miss (counted into the arrays above), and their
    times: lists ranked over the whole catalogue (popular, trending) add them to the statistics' shared ranking."""
    own_ts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stats_pop: np.ndarray | None = None
    """The statistics' own (shared) ``pop`` when ``pop`` is a copy with the shopper's events added."""
    price_sum: np.ndarray | None = None
    """Per item, the sum and the number of the prices paid before ``now`` (:meth:`price`)."""
    price_n: np.ndarray | None = None

    def price(self, rows: np.ndarray) -> np.ndarray:
        """The mean price paid for each of ``rows`` before now; NaN where nobody paid one."""
        if self.price_sum is None or self.price_n is None:
            return np.full(len(rows), np.nan)
        n = self.price_n[rows]
        return np.where(n > 0, self.price_sum[rows] / np.maximum(n, 1.0), np.nan)


def make_context(h: History, now: float, stats: ItemStats, p: RankingParams) -> Context:
    seeds = h.seeds  # the recent items that query interests and co-occurrence: none the shopper disliked
    rows, ts = h.rows[seeds], h.ts[seeds]
    lo = max(0, len(rows) - p.recent)
    rr, rts = rows[lo:], ts[lo:]
    w = recency_weights(rts, now, p.half_life_days) + 1e-3
    ctx = Context(h, now, rr, w, stats.pop_at(now), stats.users_at(now), stats.cooc_scores(rr, w, now),
                  stats.window_counts(now, 7.0), stats.window_counts(now, 30.0), stats.first_ts,
                  price_sum=(ps := stats.price_sums_at(now))[0], price_n=ps[1])
    own = (h.ts >= h.uncounted_from) & (h.ts < now)
    if own.any():
        ctx = _with_own_events(ctx, own)
    own_pairs = own if h.pairs_from == h.uncounted_from else (h.ts >= h.pairs_from) & (h.ts < now)
    if own_pairs.any():
        ctx.cooc = _with_own_pairs(ctx, stats.window, h.pairs_from)
    return ctx


def _with_own_events(ctx: Context, own: np.ndarray) -> Context:
    """``ctx`` with the shopper's own events that the statistics miss counted in, as training counts every
    shopper's earlier events: without them a newcomer's own purchases look never sold (copies: the statistics'
    arrays are shared by every request)."""
    h, now = ctx.h, ctx.now
    rows, ts = h.rows[own], h.ts[own]
    pop, first = ctx.pop.copy(), ctx.first_ts.copy()
    np.add.at(pop, rows, 1.0)
    np.minimum.at(first, rows, ts)
    users = ctx.users.copy()
    # an item the statistics already count for this shopper (bought before they stopped counting): once
    users[np.setdiff1d(rows, h.rows[h.ts < h.uncounted_from])] += 1.0
    trend7, trend30 = ctx.trend7.copy(), ctx.trend30.copy()
    np.add.at(trend7, rows[ts >= now - 7.0], 1.0)
    np.add.at(trend30, rows[ts >= now - 30.0], 1.0)
    price_sum, price_n = ctx.price_sum, ctx.price_n
    v = paid(h)[own]
    ok = np.isfinite(v)
    if ok.any() and price_sum is not None and price_n is not None:
        price_sum, price_n = price_sum.copy(), price_n.copy()
        np.add.at(price_sum, rows[ok], v[ok])
        np.add.at(price_n, rows[ok], 1.0)
    return Context(h, now, ctx.recent_rows, ctx.recent_w, pop, users, ctx.cooc, trend7, trend30, first, rows, ts,
                   ctx.pop, price_sum, price_n)


def _with_own_pairs(ctx: Context, window: int, since: float) -> np.ndarray:
    """``ctx.cooc`` (a copy) with the shopper's own co-occurrence pairs that the statistics miss: those whose later
    event is at or after ``since``, an earlier counted event included."""
    h = ctx.h
    cooc = ctx.cooc.copy()
    before = h.ts < ctx.now
    keep = first_of_runs(h.rows[before])
    i, j, t = sequence_pairs(h.rows[before][keep], window, h.ts[before][keep])
    late = t >= since
    i, j = i[late], j[late]
    if len(i) and len(ctx.recent_rows):  # weighted like the statistics' pairs by the recent rows' weights
        u, inv = np.unique(ctx.recent_rows, return_inverse=True)
        wsum = np.bincount(inv, weights=ctx.recent_w)
        at = np.minimum(np.searchsorted(u, i), len(u) - 1)
        hit = u[at] == i
        np.add.at(cooc, j[hit], wsum[at[hit]])
    return cooc
