"""A thin candidate set is topped up to k with every allowed item; those fillers go after the real candidates.
Ranked 0, 1, 2... as the source's best and scored freely, never-sold fillers came first on a small store (a network
fitted on a few shoppers), so the head of a list changed with k."""

from __future__ import annotations

import numpy as np

from recsys.ranking import RankingPipeline
from recsys.ranking.candidates import SOURCES, Candidates
from recsys.ranking.history import History
from recsys.ranking.lists import ListPolicy
from recsys.ranking.pipeline import _Request
from recsys.ranking.rules import fillers_last
from tests.ranking.fixtures import make_world, small_params


def test_fillers_score_below_every_real_candidate_in_their_own_order() -> None:
    n = len(SOURCES)
    cands = Candidates(np.arange(5), np.zeros((5, n), np.float32), np.zeros((5, n), np.float32), filler_from=3)
    s = fillers_last(cands, np.array([0.5, -1.0, 0.2, 3.0, 2.0]))
    assert list(np.argsort(-s, kind="stable")) == [0, 2, 1, 3, 4]
    assert fillers_last(Candidates(cands.rows, cands.flags, cands.ranks), s) is s  # none topped up


def test_every_filler_scores_below_every_real_candidate() -> None:
    """The edge review's store: nobody bought a hat; a newcomer's long list is topped up with never-sold items."""
    world = make_world()
    sold = world.events[~world.events["item_id"].str.startswith("hat")]
    pipe = RankingPipeline.fit(sold, world.items, world.vectors, params=small_params())
    now = float(pipe.stats.end_ts) + 1.0
    r = _Request(History.empty(), now, pipe.table.n, set(), None, 0.0, False, None, ListPolicy())
    cands, _ = pipe._prepare(r)
    assert cands.filler_from is not None and 0 < cands.filler_from < len(cands)  # k outgrew the sold items
    scored = {x.item_id: x.score for x in pipe.recommend(None, k=pipe.table.n, now=now)}
    fillers = {pipe.table.ids[row] for row in cands.rows[cands.filler_from:]}
    assert max(v for i, v in scored.items() if i in fillers) < min(v for i, v in scored.items() if i not in fillers)


def test_non_finite_scores_leave_the_shift_to_the_finite_ones() -> None:
    n = len(SOURCES)
    cands = Candidates(np.arange(4), np.zeros((4, n), np.float32), np.zeros((4, n), np.float32), filler_from=2)
    s = fillers_last(cands, np.array([np.nan, 0.5, 2.0, -np.inf]))
    assert s[2] < 0.5 and np.isnan(s[0]) and s[3] == -np.inf
