"""The embedding cache and the index build never take a damaged vector for a good one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.encoders.cache import VectorCache
from recsys.index.catalog import _nonzero


def test_a_non_finite_cached_vector_is_a_miss_encoded_again(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "v.db")
    good, bad = np.ones(4, np.float32), np.array([1, np.nan, 0, 0], np.float32)
    cache.put_many({"good": good, "bad": bad, "inf": np.full(4, np.inf, np.float32)})
    got = cache.get_many(["good", "bad", "inf"])
    assert list(got) == ["good"] and np.array_equal(got["good"], good)


def test_a_nan_row_counts_as_present_so_the_build_names_it() -> None:
    rows = np.array([[np.nan, 1.0], [0.0, 0.0], [0.5, 0.0]], np.float32)
    assert _nonzero(rows).tolist() == [True, False, True]  # NaN: present, then refused by the finite check
