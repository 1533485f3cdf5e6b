"""Items alike by name words (BM25 weights, rare words count), reciprocal-rank fusion, and the ``hybrid`` source that
finds a namesake the description vectors put far away."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from recsys.ranking.candidates import CandidateGenerator, ExactSearch
from recsys.ranking.catalog import ItemTable, SimpleVectors
from recsys.ranking.lexical import NameIndex, fuse_ranked, name_words
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats
from tests.ranking.fixtures import _unit

NAMES = ["Tilly dress", "Tilly top", "Basic top", "Basic top 2p", "Strap top", None, "Leopard tights 1p"]


def test_name_words_are_lower_cased_words_of_two_characters() -> None:
    assert name_words("Leopard tights 1p (H&M)") == ["leopard", "tights", "1p"]
    assert name_words(None) == [] and name_words("a & b") == []


def test_a_rare_shared_word_counts_more_than_a_common_one() -> None:
    idx = NameIndex(NAMES)
    s = idx.likeness(np.arange(len(NAMES)), np.arange(len(NAMES)))
    assert np.allclose(np.diag(s)[[0, 1, 2, 3, 4, 6]], 1.0, atol=1e-5) and s[5, 5] == 0.0  # no name: alike nothing
    assert s[1, 0] > s[1, 2] > 0  # "Tilly top": "Tilly" (2 of 7 names) beats "top" (4 of 7)
    assert s[0, 6] == 0.0
    near = idx.nearest([1, 5, 2], 10)
    assert near[1].tolist()[:2] == [1, 0] and set(near[1].tolist()) == {0, 1, 2, 3, 4}
    assert np.all(np.diff(s[1, near[1]]) <= 1e-7) and near[5].tolist() == []
    assert near[2].tolist()[:2] == [2, 3] and idx.nearest([2], 1)[2].tolist() == [2]  # k cuts, kept apart by k
    assert copy.deepcopy(idx).nearest([1], 10)[1].tolist() == near[1].tolist()
    assert NameIndex.of([None, ""]) is None


def test_reciprocal_rank_fusion_adds_weighted_credit() -> None:
    a, b = np.array([1, 2, 3]), np.array([3, 4])
    # 3: 1/63 + 1/61 beats 1: 1/61 beats 4 (1/62) beats 2 (1/62 first seen earlier: kept before 4)
    assert fuse_ranked([(a, 1.0), (b, 1.0)], 10).tolist() == [3, 1, 2, 4]
    assert fuse_ranked([(a, 0.1), (b, 1.0)], 2).tolist() == [3, 4]
    assert fuse_ranked([], 5).tolist() == []


def test_the_hybrid_source_finds_a_namesake_the_vectors_miss() -> None:
    rng = np.random.default_rng(0)
    n = 60
    names = [f"Plain item {i}" for i in range(n)]
    names[0], names[41] = "Mooncake skirt", "Mooncake scarf"
    v = _unit(rng.normal(size=(n, 16)).astype(np.float32))
    v[41] = -v[0]  # as far from the skirt as any vector can be
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "title": names})
    table = ItemTable.build(SimpleVectors([f"i{i}" for i in range(n)], v), items)
    p = RankingParams(hybrid_k=5, hybrid_last=1)
    gen = CandidateGenerator(table, ItemStats.fit(table.ids, {}), ExactSearch(table.ids, v), p,
                             np.ones(n, dtype=bool))
    got = gen.hybrid(np.array([0]), 5)
    assert got[0] == 0 and 41 in got.tolist()  # itself first (both lists), its namesake next to the vectors' best
    assert 41 not in gen.similar(np.array([0]), 5).tolist()  # the description vectors alone never reach it
    assert gen.hybrid(np.array([0]), 0).tolist() == []


def test_the_hybrid_source_and_name_features_are_opt_in() -> None:
    """Off by default (no ``hybrid`` candidates, the ``lsim_*`` columns zero); on, the fitted pipeline tags hybrid
    candidates and fills the name-word likeness from the titles."""
    from recsys.ranking import RankingPipeline
    from recsys.ranking.context import make_context
    from recsys.ranking.features import FEATURES, feature_matrix
    from recsys.ranking.history import history_from_frame
    from tests.ranking.fixtures import make_world, small_params, user_events

    world = make_world()
    items = world.items.copy()
    items["title"] = [f"{i.split('-')[1].title()} {i.split('-')[0]} {'Mooncake' if i.endswith('-0') else ''}"
                      for i in items["item_id"]]
    history = user_events(["dress-red-0", "hat-blue-1"])
    lsim = [i for i, n in enumerate(FEATURES) if n.startswith("lsim_")]
    for k in (0, 20):
        pipe = RankingPipeline.fit(world.events, items, world.vectors, params=small_params(hybrid_k=k))
        assert (pipe.table.names is not None and pipe.table.names.words > 0) == (k > 0)  # built only when used
        h = history_from_frame(history, pipe.table)
        ctx = make_context(h, float(h.ts[-1]) + 1.0, pipe.stats, pipe.params)
        cands = pipe._gen.generate(ctx)
        tagged = [pipe.table.ids[r] for i, r in enumerate(cands.rows) if "hybrid" in cands.sources_of(i)]
        f = feature_matrix(ctx, cands, pipe.table, np.ones(pipe.table.n, bool), pipe.params)
        if k == 0:
            assert tagged == [] and not f[:, lsim].any()
        else:  # "Mooncake" joins the two latest items' namesakes across types and colours
            namesakes = {t for t in tagged if t.endswith("-0") and t.split("-")[0] in ("shoe", "bag")}
            assert {"dress-red-0", "hat-blue-1"} <= set(tagged) and namesakes and f[:, lsim].any()


def test_name_words_are_composed_and_folded_as_the_keyword_index_folds_them() -> None:
    """An NFD title (a macOS export) split at each accent, and "Straße" never met "STRASSE"."""
    assert name_words("Cre\u0302pe STRASSE") == name_words("Crêpe Straße") == ["crêpe", "strasse"]
    assert name_words("Łódź Smørrebrød") == ["lódź", "smorrebrod"]
