"""The co-purchase space: pairs, a known answer (complements far apart in content come together, unsold items
included), out-of-fold fits for training, and the artifact round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.errors import IncompatibleArtifact
from recsys.ranking import RankingParams, RankingPipeline, SimpleVectors
from recsys.ranking.catalog import ItemTable
from recsys.ranking.cobuy import CobuyProjection, cobuy_pairs, fold_of, out_of_fold
from recsys.ranking.history import History, day_of, histories_by_user

DIM = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _outfits(seed: int = 0) -> tuple[SimpleVectors, pd.DataFrame, dict[str, str]]:
    """Tops and trousers in two styles; content says top vs trousers, the style is a faint signal. Shoppers buy a top
    and trousers of one style together, so in content a top's nearest items are other tops, in behaviour the
    trousers of its style. Items ``*-unsold-*`` are never bought."""
    rng = np.random.default_rng(seed)
    basis = {n: rng.normal(size=DIM) for n in ("top", "trousers", "sporty", "smart")}
    ids, style, vec = [], {}, []
    for kind in ("top", "trousers"):
        for st in ("sporty", "smart"):
            for i in range(12):
                iid = f"{kind}-{st}-{'unsold-' if i >= 10 else ''}{i}"
                ids.append(iid)
                style[iid] = f"{kind}-{st}"
                vec.append(basis[kind] + 0.25 * basis[st] + 0.2 * rng.normal(size=DIM))
    v = _unit(np.array(vec))
    vectors = SimpleVectors(ids, v, v, None, "test-encoder", tower_text=v)
    rows = []
    start = pd.Timestamp("2024-01-01")
    for u in range(120):
        st = "sporty" if u % 2 else "smart"
        for visit in range(3):
            day = start + pd.Timedelta(days=int(rng.integers(300)))
            for kind in ("top", "trousers"):
                pool = [i for i in ids if style[i] == f"{kind}-{st}" and "unsold" not in i]
                rows.append({"user_id": f"u{u}", "item_id": pool[rng.integers(len(pool))], "type": "purchase",
                             "value": None, "ts": day + pd.Timedelta(hours=visit)})
    return vectors, pd.DataFrame(rows), style


def test_pairs_are_distinct_items_within_the_window() -> None:
    h = History(np.array([0, 1, 1, 2]), np.zeros(4, np.int64), np.full(4, np.nan), np.array([0.0, 1.0, 2.0, 30.0]))
    pairs = cobuy_pairs({"u": h}, window_days=5, max_per_user=100, rng=np.random.default_rng(0))
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 1)]  # never (1, 1), never across 28 days
    capped = cobuy_pairs({"u": h}, window_days=100, max_per_user=2, rng=np.random.default_rng(0))
    assert len(capped) == 2


def test_complements_meet_in_the_space_unsold_ones_too() -> None:
    vectors, events, style = _outfits()
    table = ItemTable.build(vectors)
    proj = CobuyProjection.fit(table, histories_by_user(events, table), dim=8, epochs=60)
    assert proj is not None
    b = proj.transform(table)
    top_rows = [r for r, i in enumerate(table.ids) if style[i] == "top-sporty" and "unsold" not in i]
    trousers = [r for r, i in enumerate(table.ids) if style[i].startswith("trousers")]
    for space, expect in ((table.content, False), (b, True)):
        best = trousers[int(np.argmax((space[top_rows] @ space[trousers].T).mean(0)))]
        # the content space ranks every top above every trousers; behaviour puts the matching trousers first
        near = np.argsort(-(space[top_rows] @ space.T).mean(0))[:10]
        has_trousers = any(table.ids[r].startswith("trousers") for r in near)
        assert has_trousers is expect
        if expect:
            assert style[table.ids[best]] == "trousers-sporty"
    unsold = [r for r, i in enumerate(table.ids) if i.startswith("trousers-sporty-unsold")]
    other = [r for r, i in enumerate(table.ids) if i.startswith("trousers-smart-unsold")]
    q = b[top_rows].mean(0)
    assert (b[unsold] @ q).min() > (b[other] @ q).max()  # never bought, placed by content alone


def test_too_few_pairs_fit_nothing() -> None:
    vectors, events, _ = _outfits()
    table = ItemTable.build(vectors)
    assert CobuyProjection.fit(table, histories_by_user(events.head(6), table)) is None


def test_training_folds_use_the_other_half() -> None:
    vectors, events, _ = _outfits()
    table = ItemTable.build(vectors)
    hist = histories_by_user(events, table)
    assert {fold_of(u) for u in hist} == {0, 1} and fold_of("u7") == fold_of("u7")
    served, folds = out_of_fold(table, hist, dim=8, epochs=5)
    assert served is not None and folds[0] is not None and folds[1] is not None
    assert not np.allclose(folds[0], folds[1])


def test_pipeline_saves_and_refuses_other_content(tmp_path: Path) -> None:
    vectors, events, _ = _outfits()
    p = RankingParams(epochs=1, cobuy=True, cobuy_epochs=3, cobuy_dim=8)
    pipe = RankingPipeline.fit(events, None, vectors, params=p)
    assert pipe.cobuy is not None and pipe.table.behaviour is not None
    recs = pipe.recommend(events[events.user_id == "u1"], k=10)
    assert any("cobuy" in r.sources for r in recs)
    loaded = RankingPipeline.load(pipe.save(tmp_path / "r"), vectors=vectors)
    assert loaded.cobuy is not None
    np.testing.assert_allclose(loaded.table.behaviour, pipe.table.behaviour, atol=1e-6)
    wider = SimpleVectors(vectors.item_ids, vectors.fused, vectors.text, None, "test-encoder",
                          tower_text=np.hstack([vectors.fused, vectors.fused]))
    with pytest.raises(IncompatibleArtifact, match="co-purchase space"):
        loaded.update_items(wider)
    off = RankingPipeline.fit(events, None, vectors, params=RankingParams(epochs=1))
    assert off.cobuy is None and off.table.behaviour is None


def test_an_evaluations_served_space_sees_only_the_events_before_its_cut() -> None:
    """`recsys evaluate` fits the ranker on other shoppers' events after a target too; the space is one matrix, not
    counted as of each request, so it is fitted on the events before the earliest target (``before``), and so are
    the spaces of the training examples (else they would meet pairs the served one never does)."""
    vectors, events, _ = _outfits()
    table = ItemTable.build(vectors)
    hist = histories_by_user(events, table)
    served, folds = out_of_fold(table, hist, before=events.ts.min().to_pydatetime(), dim=8, epochs=5)
    assert served is None and folds[0] is None and folds[1] is None  # nothing before the cut
    mid = events.ts.min() + (events.ts.max() - events.ts.min()) / 2
    cut, cut_folds = out_of_fold(table, hist, before=mid.to_pydatetime(), dim=8, epochs=5, min_pairs=50)
    _, whole_folds = out_of_fold(table, hist, dim=8, epochs=5, min_pairs=50)
    for f in (0, 1):
        early = {u: h.prefix(int(np.searchsorted(h.ts, day_of(mid.to_pydatetime()), side="left")))
                 for u, h in hist.items() if fold_of(u) != f}
        fold_alone = CobuyProjection.fit(table, early, dim=8, epochs=5, min_pairs=50)
        got = cut_folds[f]
        if fold_alone is None:
            assert got is None
        else:
            assert got is not None and whole_folds[f] is not None
            np.testing.assert_allclose(got, fold_alone.transform(table), atol=1e-6)
    alone = CobuyProjection.fit(table, histories_by_user(events[events.ts < mid], table), dim=8, epochs=5,
                                min_pairs=50)
    whole, _ = out_of_fold(table, hist, dim=8, epochs=5, min_pairs=50)
    assert cut is not None and alone is not None and whole is not None
    np.testing.assert_allclose(cut.transform(table), alone.transform(table), atol=1e-6)
    assert not np.allclose(cut.transform(table), whole.transform(table), atol=1e-3)
    pipe = RankingPipeline.fit(events, None, vectors, params=RankingParams(hidden=8, epochs=1, cobuy=True),
                               cobuy_before=events.ts.min().to_pydatetime())
    assert pipe.cobuy is None
