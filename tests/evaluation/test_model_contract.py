"""One contract, run over every model the evaluation compares (ours with and without the co-purchase space, and every
baseline), through the same ``recommend_all`` path ``recsys evaluate`` uses: a list per user of at most k distinct
catalogue items, the same list when asked twice, a list for a shopper with no history, and the user's own items
left out exactly when the model says it leaves them out."""

from __future__ import annotations

from functools import cache

import pandas as pd
import pytest

from recsys.evaluation import Batch, Split, make_baselines, recommend_all, temporal_split
from recsys.evaluation.experiment import Recommend
from recsys.ranking import RankingPipeline
from tests.ranking.fixtures import make_world, small_params

K = 8
MODELS = ("ours", "ours_cobuy", "popular", "item_cooccurrence", "content_knn", "content_peer")


@cache
def _world() -> tuple[Split, list[str], dict[str, Recommend | Batch]]:
    w = make_world(seed=3)
    split = temporal_split(w.events, "hm", part=None)
    ids = list(w.vectors.item_ids)
    models: dict[str, Recommend | Batch] = dict(make_baselines(split, ids, w.vectors.fused,
                                                               content_vectors=w.vectors.text))
    for name, cobuy in (("ours", False), ("ours_cobuy", True)):
        pipe = RankingPipeline.fit(split.train, w.items, w.vectors, params=small_params(cobuy=cobuy, cobuy_epochs=3))

        def fn(users: list[str], hists: list[pd.DataFrame], k: int, pipe: RankingPipeline = pipe) -> list[list[str]]:
            now = [split.target_time[u].to_pydatetime() for u in users]
            return [[r.item_id for r in rs] for rs in pipe.recommend_many([h if len(h) else None for h in hists], k,
                                                                           now=now)]
        models[name] = Batch(fn)
    return split, ids, models


@pytest.mark.parametrize("name", MODELS)
def test_lists_of_distinct_known_items(name: str) -> None:
    split, ids, models = _world()
    lists = recommend_all(split, models[name], K)
    assert len(lists) == len(split.users) > 5
    for rec in lists:
        assert 0 < len(rec) <= K and len(set(rec)) == len(rec) and set(rec) <= set(ids)
    assert recommend_all(split, models[name], K) == lists  # the same answer twice


@pytest.mark.parametrize("name", MODELS)
def test_a_shopper_without_history_gets_a_list(name: str) -> None:
    split, _, models = _world()
    user = split.users[0]
    empty = Split(split.protocol, split.train, [user], {user: split.histories[user].iloc[0:0]},
                  {user: split.targets[user]}, {user: split.target_time[user]})
    assert len(recommend_all(empty, models[name], K)[0]) == K


def test_content_knn_leaves_own_items_out_and_the_peer_keeps_them() -> None:
    split, _, models = _world()
    own = [set(split.histories[u]["item_id"]) for u in split.users]
    knn, peer = recommend_all(split, models["content_knn"], K), recommend_all(split, models["content_peer"], K)
    assert not any(set(r) & o for r, o in zip(knn, own, strict=True))
    assert any(set(r) & o for r, o in zip(peer, own, strict=True))
