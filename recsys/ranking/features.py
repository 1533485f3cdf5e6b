"""The feature matrix of (history, candidate) pairs, from one request's :class:`~recsys.ranking.context.Context`.

The features describe the candidate alone (popularity, trend, age, price), its relation to the history (content
similarity statistics, co-occurrence, repeat and variant counts, category share) and the candidate sources. The
context counts every statistic as of the request's time, so in training a user's own later events never leak into
the features of an earlier anchor.
"""

from __future__ import annotations

import numpy as np

from recsys.ranking.candidates import SOURCES, Candidates
from recsys.ranking.catalog import MAX_ATTRS, ItemTable
from recsys.ranking.context import Context
from recsys.ranking.history import recency_weights
from recsys.ranking.params import RankingParams

FEATURES: tuple[str, ...] = (
    "log_pop", "log_users", "log_trend_7d", "log_trend_30d", "log_age_days", "never_seen", "unknown_at_fit",
    "price_ratio", "price_missing",
    "sim_max", "sim_mean", "sim_last", "sim_weighted", "sim_max_last10",
    "csim_max", "csim_last", "csim_weighted", "csim_max_last10",
    "bsim_max", "bsim_last", "bsim_weighted", "bsim_max_last10",
    "lsim_max", "lsim_last", "lsim_weighted", "lsim_max_last10",
    "log_cooc", "cooc_share",
    "log_repeat", "repeat_days", "log_variant", "variant_days", "category_share",
    "log_history", "days_since_last", *(f"attr_share_{i}" for i in range(MAX_ATTRS)),
    *(f"src_{s}" for s in SOURCES), *(f"rank_{s}" for s in SOURCES),
)


def feature_matrix(ctx: Context, cands: Candidates, table: ItemTable, known: np.ndarray,
                   p: RankingParams) -> np.ndarray:
    """(C, len(FEATURES)) float32 for the candidates of one context."""
    h, now, rows = ctx.h, ctx.now, cands.rows
    c = len(rows)
    f = np.zeros((c, len(FEATURES)), np.float32)
    col = {name: i for i, name in enumerate(FEATURES)}
    f[:, col["log_pop"]] = np.log1p(ctx.pop[rows])
    f[:, col["log_users"]] = np.log1p(ctx.users[rows])
    f[:, col["log_trend_7d"]] = np.log1p(ctx.trend7[rows])
    f[:, col["log_trend_30d"]] = np.log1p(ctx.trend30[rows])
    first = ctx.first_ts[rows]
    seen = first < now
    f[:, col["log_age_days"]] = np.where(seen, np.log1p(np.clip(now - first, 0, None)), 0.0)
    f[:, col["never_seen"]] = ~seen
    f[:, col["unknown_at_fit"]] = ~known[rows]
    price = _price(ctx, table, rows)
    hp = _price(ctx, table, h.rows[-p.max_history:]) if len(h) else np.zeros(0)
    hp = hp[np.isfinite(hp) & (hp > 0)]
    ok = np.isfinite(price) & (price > 0) & (len(hp) > 0)
    ref = float(np.median(hp)) if len(hp) else 1.0
    f[:, col["price_ratio"]] = np.where(ok, np.log(np.where(ok, price, 1.0) / ref), 0.0)
    f[:, col["price_missing"]] = ~ok
    L = min(len(h), p.max_history)
    if L:
        hr, hts = h.rows[-L:], h.ts[-L:]
        hw = recency_weights(hts, now, p.half_life_days) + 1e-3
        _similarities_of(f, col, table, rows, hr, hw)
        if p.hybrid_k and table.names is not None:  # name words (lexical.py): a shared collection or print name
            _similarities(f, col, "lsim", table.names.likeness(rows, hr), hw)
        f[:, col["log_history"]] = np.log1p(len(h))
        f[:, col["days_since_last"]] = np.log1p(max(now - float(h.ts[-1]), 0.0))
        # repeats and variants over the whole history
        cnt, last_seen = _repeats(h.rows, h.ts, rows)
        f[:, col["log_repeat"]] = np.log1p(cnt)
        f[:, col["repeat_days"]] = np.where(cnt > 0, np.log1p(np.clip(now - last_seen, 0, None)), -1.0)
        hg = table.group[h.rows]
        ok = hg >= 0
        if ok.any():
            cnt_g, glast = _repeats(hg[ok], h.ts[ok], table.group[rows])
            f[:, col["log_variant"]] = np.log1p(cnt_g)
            f[:, col["variant_days"]] = np.where(cnt_g > 0, np.log1p(np.clip(now - glast, 0, None)), -1.0)
        share = _shares(table.share_keys, h.rows[-p.max_history:], rows)
        f[:, col["category_share"]] = share[:, 0]
        a0 = col["attr_share_0"]
        f[:, a0: a0 + share.shape[1] - 1] = share[:, 1:]
    cs = ctx.cooc[rows]
    f[:, col["log_cooc"]] = np.log1p(cs)
    tot = ctx.cooc.sum()
    f[:, col["cooc_share"]] = cs / tot if tot > 0 else 0.0
    s0 = col[f"src_{SOURCES[0]}"]
    f[:, s0: s0 + len(SOURCES)] = cands.flags
    r0 = col[f"rank_{SOURCES[0]}"]
    f[:, r0: r0 + len(SOURCES)] = np.log1p(np.minimum(cands.ranks, 1000.0)) / np.log1p(1000.0)
    return f


def _price(ctx: Context, table: ItemTable, rows: np.ndarray) -> np.ndarray:
    """The catalogue's price where it gives one, else the mean price paid before now (H&M prices exist only on
    the purchases: a statistic of the events, counted as of now like popularity)."""
    listed = table.price[rows]
    return np.where(np.isfinite(listed), listed, ctx.price(rows))


def _repeats(h_codes: np.ndarray, h_ts: np.ndarray | None, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``codes`` (rows, groups, categories...): how often the history's ``h_codes`` hold it and when
    last (``h_ts`` sorted oldest first; -inf when never or no times given), looked up in the history's own
    distinct codes: no catalogue-sized arrays per request. ``h_codes`` are >= 0."""
    rev = h_codes[::-1]
    u, last, cnt = np.unique(rev, return_index=True, return_counts=True)  # first in reverse: the latest
    at = np.minimum(np.searchsorted(u, codes), len(u) - 1)
    hit = u[at] == codes
    when = np.where(hit, h_ts[::-1][last[at]], -np.inf) if h_ts is not None else np.full(len(codes), -np.inf)
    return np.where(hit, cnt[at], 0), when


def _shares(keys: np.ndarray, hrows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(C, columns of ``keys``): per candidate, the share of the history rows ``hrows`` with its category (column
    0) and each attribute value (:attr:`ItemTable.share_keys`), counted in one pass over the history's codes."""
    hk = keys[hrows].ravel()
    u, cnt = np.unique(hk[hk >= 0], return_counts=True)
    if not len(u):
        return np.zeros((len(rows), keys.shape[1]))
    ck = keys[rows]
    at = np.minimum(np.searchsorted(u, ck), len(u) - 1)
    return np.where(u[at] == ck, cnt[at], 0) / len(hrows)


def _similarities_of(f: np.ndarray, col: dict[str, int], table: ItemTable, rows: np.ndarray, hr: np.ndarray,
                     hw: np.ndarray) -> None:
    """The candidate-to-history similarity statistics of the fused, content and co-purchase spaces, the products
    stacked so each statistic is one reduction over all spaces."""
    spaces = [(prefix, v) for prefix, v in (("sim", table.fused), ("csim", table.content),
                                            ("bsim", table.behaviour)) if v is not None]
    sims = np.empty((len(spaces), len(rows), len(hr)), np.float32)
    for s, (_, v) in enumerate(spaces):
        np.matmul(v[rows], v[hr].T, out=sims[s])
    stats = {"max": sims.max(2), "last": sims[:, :, -1], "weighted": (sims * hw).sum(2) / hw.sum(),
             "max_last10": sims[:, :, -10:].max(2)}
    f[:, col["sim_mean"]] = sims[0].mean(1)
    for s, (prefix, _) in enumerate(spaces):
        for name, value in stats.items():
            f[:, col[f"{prefix}_{name}"]] = value[s]


def _similarities(f: np.ndarray, col: dict[str, int], prefix: str, sims: np.ndarray, hw: np.ndarray) -> None:
    """The candidate-to-history similarity statistics of one space (the fused space also gets the mean)."""
    f[:, col[f"{prefix}_max"]] = sims.max(1)
    if f"{prefix}_mean" in col:
        f[:, col[f"{prefix}_mean"]] = sims.mean(1)
    f[:, col[f"{prefix}_last"]] = sims[:, -1]
    f[:, col[f"{prefix}_weighted"]] = (sims * hw).sum(1) / hw.sum()
    f[:, col[f"{prefix}_max_last10"]] = sims[:, -10:].max(1)
