"""A known-answer dataset where anything that sees the target day scores near-perfectly: the pipeline must not.

Every shopper buys a few ordinary items in January, then the same "hot" item on one shared day D, their last. The
evaluated (held-out) shoppers' D purchases are the targets; the other shoppers' D purchases stay in training. Before
D nobody had bought "hot", so an honest recommender at D cannot know it; all-time popularity (or an item price
taken from every transaction) would put it first for everyone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.evaluation import evaluate_store
from recsys.evaluation.baselines import Popular
from recsys.evaluation.splits import temporal_split
from recsys.ranking import RankingParams, RankingPipeline, SimpleVectors

N_USERS, N_ITEMS, N_DEAD, K = 80, 30, 300, 5
DAY = pd.Timestamp("2020-03-01")


def shoppers() -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(N_USERS):
        for j, item in enumerate(rng.choice(N_ITEMS, 4, replace=False)):
            rows.append((f"u{u}", f"i{item}", pd.Timestamp("2020-01-01") + pd.Timedelta(days=int(j * 3 + u % 5))))
        rows.append((f"u{u}", "hot", DAY))
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).assign(type="purchase", value=np.nan)
    # never-bought stock, so "never sold before" alone cannot single out the hot item
    ids = [f"i{i}" for i in range(N_ITEMS)] + [f"dead{i}" for i in range(N_DEAD)] + ["hot"]
    return ev, ids


def test_a_leaky_popularity_finds_the_hot_item_but_nothing_here_does() -> None:
    ev, ids = shoppers()
    split = temporal_split(ev, "hm", part="test")
    assert 10 <= len(split) < N_USERS and all(t == ["hot"] for t in split.targets.values())
    assert (split.train["item_id"] == "hot").any()  # the other shoppers' day-D purchases are in training
    leaky = Popular(split.train)  # all-time counts: the test would catch this
    assert np.mean([("hot" in leaky(u, split.histories[u], K)) for u in split.users]) == 1.0

    vectors = SimpleVectors(ids, np.random.default_rng(1).normal(size=(len(ids), 8)).astype(np.float32))
    params = RankingParams(hidden=16)

    def make_ours(split):  # type: ignore[no-untyped-def]
        pipe = RankingPipeline.fit(split.train, None, vectors, params=params)

        def rec(user_id: str, history: pd.DataFrame, k: int) -> list[str]:
            return [r.item_id for r in pipe.recommend(history, k, now=split.target_time[user_id])]
        return rec

    res = evaluate_store(ev, make_ours=make_ours, item_ids=ids, vectors=vectors.fused, k=K, part="test")
    assert res["users"] == len(split)
    assert res["metrics"]["recall"] < 0.3
    for name, m in res["baselines"].items():
        assert m["recall"] < 0.3, name

