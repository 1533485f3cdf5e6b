"""The training cap on candidates per anchor (``max_candidates``) when a basket holds more positives than it."""

from __future__ import annotations

import numpy as np

from recsys.ranking import RankingParams, RankingPipeline
from recsys.ranking.candidates import Candidates
from recsys.ranking.train import _cap
from tests.ranking.fixtures import make_world, small_params


def _candidates(n: int) -> Candidates:
    return Candidates(np.arange(n, dtype=np.int64), np.ones((n, 2), np.float32), np.zeros((n, 2), np.float32))


def test_cap_keeps_every_positive_or_a_sample_of_them() -> None:
    labels = np.array([1, 0, 1, 1, 0, 1, 1, 0], bool)  # 5 positives, 3 negatives
    rng = np.random.default_rng(0)
    c, lab = _cap(_candidates(8), labels, 6, rng)
    assert len(c) == 6 and lab.sum() == 5 and set(np.flatnonzero(labels)) <= set(c.rows.tolist())
    c, lab = _cap(_candidates(8), labels, 5, rng)
    assert len(c) == 5 and lab.all()
    c, lab = _cap(_candidates(8), labels, 2, rng)  # more positives than the cap: two of them, no negative
    assert len(c) == 2 and lab.all() and set(c.rows.tolist()) <= set(np.flatnonzero(labels))


def test_fit_with_baskets_bigger_than_the_cap() -> None:
    """Weekly baskets of several purchases and ``max_candidates`` 2: a fit, not numpy's "negative dimensions"."""
    w = make_world()
    ev = w.events.assign(ts=w.events["ts"].dt.floor("7D"))
    assert ev.groupby(["user_id", "ts"]).size().max() > 2
    p = RankingParams.checked({"max_candidates": 2}, small_params())
    pipe = RankingPipeline.fit(ev, w.items, w.vectors, params=p)
    user = ev[ev["user_id"] == "u0"]
    assert len(pipe.recommend(user, 5)) == 5
