"""Co-occurrence scores at serving time equal the weighted count of the stored pairs (duplicate query rows add)."""

from __future__ import annotations

import numpy as np

from recsys.ranking.history import History
from recsys.ranking.stats import ItemStats


def test_current_cooc_scores_count_the_pairs() -> None:
    rng = np.random.default_rng(3)
    n = 40
    hist = {}
    for u in range(30):
        m = int(rng.integers(1, 15))
        hist[f"u{u}"] = History(rows=rng.integers(0, n, m), types=np.zeros(m, np.int8),
                                ts=np.sort(rng.uniform(0, 50, m)), values=np.full(m, np.nan))
    stats = ItemStats.fit([f"i{i}" for i in range(n)], hist, window=3)
    query = np.array([4, 7, 4, 0, 39])
    w = rng.uniform(0.1, 1.0, len(query))
    want = np.zeros(n)
    for q, wq in zip(query, w, strict=True):
        np.add.at(want, stats.cooc_col[stats.cooc_row == q], np.float32(wq))
    got = stats.cooc_scores(query, w, now=stats.end_ts + 1)  # after the last event: the all-time pairs
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert stats.cooc_scores(np.zeros(0, np.int64), np.zeros(0), now=stats.end_ts + 1).sum() == 0


def test_counts_as_of_a_past_time_are_counted_once_and_kept() -> None:
    """A data clock before a few live events far ahead of the rest asks for the same cut on every request: counted
    anew each time, a request cost 6 ms instead of 0.04 on 2M events (a review of this session's clock change)."""
    rng = np.random.default_rng(5)
    hist = {f"u{u}": History(rows=rng.integers(0, 20, 6), types=np.zeros(6, np.int8),
                             ts=np.sort(rng.uniform(0, 50, 6)), values=np.full(6, np.nan)) for u in range(20)}
    stats = ItemStats.fit([f"i{i}" for i in range(20)], hist, window=3)
    now = float(np.median(stats.ev_ts))
    pop, users = stats.pop_at(now), stats.users_at(now)
    assert stats.pop_at(now) is pop and stats.users_at(now) is users  # kept, not counted again
    assert not pop.flags.writeable and pop.sum() == (stats.ev_ts < now).sum()
    assert stats.pop_at(stats.end_ts + 1) is stats.pop  # at or after the last event: the all-time totals
