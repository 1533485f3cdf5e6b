"""Per-candidate repeat counts and last times, looked up in the history, equal the catalogue-wide count."""

from __future__ import annotations

import numpy as np

from recsys.ranking.features import _repeats


def test_repeats_match_catalogue_wide_counts() -> None:
    rng = np.random.default_rng(0)
    n = 50
    h_rows = rng.integers(0, n, 30)
    h_ts = np.sort(rng.uniform(0, 100, 30))
    rows = rng.permutation(n)[:35]
    cnt, last = _repeats(h_rows, h_ts, rows)
    want_cnt = np.bincount(h_rows, minlength=n)[rows]
    want_last = np.full(n, -np.inf)
    np.maximum.at(want_last, h_rows, h_ts)
    np.testing.assert_array_equal(cnt, want_cnt)
    np.testing.assert_array_equal(last, want_last[rows])
