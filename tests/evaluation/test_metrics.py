"""Metrics against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.evaluation.metrics import coverage, dedupe, hit_matrix, per_user, summarize


def test_single_user_hand_computed() -> None:
    # targets {b, d, z}; list a b c d -> hits at positions 2 and 4; z never recommended
    pu = per_user([["a", "b", "c", "d"]], [["b", "d", "z"]], k=4)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert pu.recall[0] == pytest.approx(2 / 3)
    assert pu.ndcg[0] == pytest.approx(dcg / idcg)
    assert pu.hit_rate[0] == 1.0
    assert pu.mrr[0] == pytest.approx(1 / 2)


def test_cutoff_and_idcg_capped_at_k() -> None:
    # 3 targets, k=2: a perfect top-2 has NDCG 1 although recall is 2/3
    pu = per_user([["x", "y", "z"]], [["x", "y", "z"]], k=2)
    assert pu.recall[0] == pytest.approx(2 / 3)
    assert pu.ndcg[0] == pytest.approx(1.0)
    # the hit at position 3 is beyond k=2
    pu = per_user([["a", "b", "x"]], [["x"]], k=2)
    assert pu.recall[0] == 0 and pu.hit_rate[0] == 0 and pu.mrr[0] == 0 and pu.ndcg[0] == 0


def test_duplicates_count_once_and_free_no_slot() -> None:
    assert dedupe(["a", "a", "b", "c"], 2) == ["a", "b"]
    pu = per_user([["a", "a", "b"]], [["b"]], k=2)
    assert pu.hit_rate[0] == 1.0 and pu.mrr[0] == pytest.approx(0.5)


def test_averages_over_users_and_empty_lists() -> None:
    recs = [["a", "b"], [], ["q", "r"]]
    targets = [["a"], ["a"], ["r", "s"]]
    m = summarize(recs, targets, k=2, catalogue_size=8)
    assert m["recall"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["hit_rate"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 + 0 + 0.5) / 3)
    ndcg3 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["ndcg"] == pytest.approx((1 + 0 + ndcg3) / 3)
    assert m["coverage"] == pytest.approx(4 / 8)


def test_mean_with_mask_and_empty_slice() -> None:
    pu = per_user([["a"], ["b"]], [["a"], ["c"]], k=1)
    assert pu.mean(np.array([True, False]))["recall"] == 1.0
    assert pu.mean(np.array([False, False]))["recall"] is None


def test_hit_matrix_and_coverage() -> None:
    h = hit_matrix([["a", "b", "c"]], [["c", "a"]], k=3)
    assert h.tolist() == [[True, False, True]]
    assert coverage([["a", "b"], ["b", "c", "d"]], k=2, catalogue_size=10) == pytest.approx(0.3)
    assert coverage([["a"]], k=1, catalogue_size=0) == 0.0
