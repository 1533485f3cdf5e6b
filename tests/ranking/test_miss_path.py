"""The miss path's fast implementations give exactly what the plain ones they replaced gave.

Each ``_plain_*`` below is the implementation before issue 18 (ranking a miss in about a millisecond), kept here as
the reference: swapped into a fitted pipeline, the lists (ids, order, sources, explanations) and scores must be the
same for many histories and request options.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from recsys.ranking import RankingPipeline, candidates, explain, neighbours, pipeline
from recsys.ranking.candidates import kmeans
from recsys.ranking.lists import ListPolicy
from recsys.ranking.neighbours import Neighbours
from tests.ranking.fixtures import World, make_world, small_params, user_events


def _plain_kmeans(x: np.ndarray, k: int, weights: np.ndarray, iters: int = 8) -> np.ndarray:
    k = min(k, len(x))
    centres = [int(np.argmax(weights))]
    for _ in range(1, k):
        d = 1 - (x @ x[centres].T).max(axis=1)
        if d.max() < 0.05:
            break
        centres.append(int(np.argmax(d * weights)))
    c = x[centres].copy()
    members = np.arange(len(c))[None, :]
    for _ in range(iters):
        assign = np.argmax(x @ c.T, axis=1)
        w = (assign[:, None] == members) * weights[:, None]
        v = (w.T @ x).astype(c.dtype)
        has = w.any(axis=0)
        c[has] = v[has] / np.maximum(np.linalg.norm(v[has], axis=1, keepdims=True), 1e-9)
    return c.astype(np.float32)


def _plain_top_of_max(self: Neighbours, latest: np.ndarray, k: int) -> np.ndarray | None:
    if k > self.k:
        return None
    self.prefetch([int(r) for r in latest])
    lists = [self.of(int(r)) for r in latest]
    rows = np.concatenate([r for r, _ in lists])
    sims = np.concatenate([s for _, s in lists])
    order = np.lexsort((rows, -sims))
    rows = rows[order]
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)][:k]


def _plain_build(self: candidates._Collector) -> candidates.Candidates:
    s_n = len(candidates.SOURCES)
    if not self.parts:
        empty = np.zeros((0, s_n), np.float32)
        return candidates.Candidates(np.zeros(0, np.int64), empty, empty + 1000.0)
    rows = np.concatenate([r for r, _ in self.parts])
    src = np.concatenate([np.full(len(r), s, np.int64) for r, s in self.parts])
    rank = np.concatenate([np.arange(len(r), dtype=np.float32) for r, _ in self.parts])
    uniq, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    pos_of = np.empty(len(uniq), np.int64)
    pos_of[order] = np.arange(len(uniq))
    pos = pos_of[inverse]
    _, once = np.unique(pos * s_n + src, return_index=True)
    flags = np.zeros((len(uniq), s_n), np.float32)
    ranks = np.full((len(uniq), s_n), 1000.0, np.float32)
    flags[pos[once], src[once]] = 1.0
    ranks[pos[once], src[once]] = rank[once]
    return candidates.Candidates(uniq[order], flags, ranks)


def _plain_cooc_order(cs: np.ndarray, nz: np.ndarray, k: int) -> np.ndarray:
    return nz[np.argsort(-cs[nz], kind="stable")[:k]]


def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap the reference implementations in (for the rest of the test)."""
    monkeypatch.setattr(candidates, "kmeans", _plain_kmeans)
    monkeypatch.setattr(neighbours.Neighbours, "top_of_max", _plain_top_of_max)
    monkeypatch.setattr(candidates._Collector, "build", _plain_build)
    monkeypatch.setattr(candidates.Candidates, "sources_at",
                        lambda c, idx, bought=None: [c.sources_of(i, bought) for i in idx])
    monkeypatch.setattr(pipeline, "recent_rows", lambda h: None)  # each explanation finds its own recent rows
    monkeypatch.setattr(explain, "recent_rows", lambda h: np.unique(h.rows[h.seeds][-100:]))


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(per_combo=8)


@pytest.fixture(scope="module")
def pipe(world: World) -> RankingPipeline:
    p = small_params(similar_k=30, similar_last=4)
    return RankingPipeline.fit(world.events, world.items, world.vectors, params=p)


def _requests(world: World) -> list[tuple[Any, dict[str, Any]]]:
    """Histories of the fixture's users and a new one, with the request options the service passes."""
    ids = world.items["item_id"].tolist()
    rng = np.random.default_rng(3)
    users = world.events.groupby("user_id", sort=True)
    hists: list[Any] = [g for _, g in list(users)[:25]]
    hists += [None, user_events([ids[3]]), user_events([ids[i] for i in rng.choice(len(ids), 12)],
                                                       types=["view", "like", "dislike"] * 4)]
    some = {ids[i] for i in rng.choice(len(ids), 30, replace=False)}
    options: list[dict[str, Any]] = [
        {}, {"explain": True}, {"diversity": 0.4}, {"exclude": some}, {"allowed": sorted(some)[:20] + ids[:40]},
        {"policy": ListPolicy(0.25, 2)}, {"policy": ListPolicy(0.25, 2), "diversity": 0.3},
        {"boosts": {ids[5]: 1.0, "category:dress": 0.5}}, {"exclude_seen": True}, {"k": 40},
    ]
    return [(h, o) for h in hists for o in options]


def _lists(pipe: RankingPipeline, reqs: list[tuple[Any, dict[str, Any]]]) -> list[list[tuple[Any, ...]]]:
    out = []
    for h, o in reqs:
        opts = {k: v for k, v in o.items() if k != "k"}
        recs = pipe.recommend(h, o.get("k", 10), **opts)
        out.append([(r.item_id, r.score, r.sources, r.explanation) for r in recs])
    return out


def test_fast_miss_path_gives_the_plain_lists(world: World, pipe: RankingPipeline,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = _requests(world)
    fast = _lists(copy.deepcopy(pipe), reqs)  # a deep copy: no kept neighbour lists shared between the runs
    _plain(monkeypatch)
    plain = _lists(copy.deepcopy(pipe), reqs)
    assert sum(map(len, fast)) > 1000
    for a, b in zip(fast, plain, strict=True):
        assert [(i, s, e) for i, _, s, e in a] == [(i, s, e) for i, _, s, e in b]
        np.testing.assert_allclose([x[1] for x in a], [x[1] for x in b], atol=1e-6, rtol=0)


def test_kmeans_stopping_at_convergence_gives_the_same_centres() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 30, 60):
        x = rng.normal(size=(n, 16)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        w = rng.random(n).astype(np.float32) + 1e-3
        for k in (1, 3, 5):
            np.testing.assert_array_equal(kmeans(x, k, w), _plain_kmeans(x, k, w))


def test_top_of_max_from_list_heads_equals_the_full_merge() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=(800, 12)).astype(np.float32)
    v[rng.integers(0, 800, 200)] = v[rng.integers(0, 800, 200)]  # identical vectors: ties everywhere
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    nb = Neighbours(v)
    for _ in range(60):
        latest = rng.choice(len(v), size=int(rng.integers(1, 11)), replace=False)
        k = int(rng.integers(1, nb.k + 1))
        got, want = nb.top_of_max(latest, k), _plain_top_of_max(nb, latest, k)
        assert got is not None and want is not None
        assert got.tolist() == want.tolist()


def test_collector_build_equals_the_plain_one() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        col = candidates._Collector()
        for _ in range(int(rng.integers(0, 9))):
            source = candidates.SOURCES[int(rng.integers(0, len(candidates.SOURCES)))]
            col.add(source, rng.integers(0, 60, int(rng.integers(0, 40))))
        a, b = col.build(), _plain_build(col)
        assert a.rows.tolist() == b.rows.tolist()
        np.testing.assert_array_equal(a.flags, b.flags)
        np.testing.assert_array_equal(a.ranks, b.ranks)


def test_cooc_order_by_partition_equals_the_stable_sort() -> None:
    rng = np.random.default_rng(4)
    for _ in range(100):
        cs = rng.integers(0, 4, 300).astype(np.float64) * rng.choice([1.0, 0.5], 300)
        nz = np.flatnonzero(cs > 0)
        k = int(rng.integers(1, 80))
        assert nz[neighbours.top_k(cs[nz], k)].tolist() == _plain_cooc_order(cs, nz, k).tolist()


def _plain_changed_columns(ctx: Any, rows: np.ndarray, table: Any, p: Any) -> dict[str, np.ndarray]:
    """The similarity and share columns as the plain feature code made them: one space and one code at a time."""
    from recsys.ranking.features import FEATURES, _repeats, _similarities
    from recsys.ranking.history import recency_weights

    h, col = ctx.h, {name: i for i, name in enumerate(FEATURES)}
    f = np.zeros((len(rows), len(FEATURES)), np.float32)
    L = min(len(h), p.max_history)
    hr, hw = h.rows[-L:], recency_weights(h.ts[-L:], ctx.now, p.half_life_days) + 1e-3
    for prefix, v in (("sim", table.fused), ("csim", table.content), ("bsim", table.behaviour)):
        if v is not None:
            _similarities(f, col, prefix, v[rows] @ v[hr].T, hw)
    hrows = h.rows[-p.max_history:]
    hc = table.category[hrows]
    if (hc >= 0).any():
        f[:, col["category_share"]] = _repeats(hc[hc >= 0], None, table.category[rows])[0] / len(hc)
    for j in range(len(table.attr_keys)):
        codes = table.attrs[:, j]
        hc = codes[hrows][codes[hrows] >= 0]
        if len(hc):
            f[:, col["attr_share_0"] + j] = _repeats(hc, None, codes[rows])[0] / len(hrows)
    names = [n for n in FEATURES if n.split("_")[0] in ("sim", "csim", "bsim", "category", "attr")]
    return {n: f[:, col[n]] for n in names}


def test_feature_matrix_equals_the_plain_columns(world: World, pipe: RankingPipeline) -> None:
    from recsys.ranking.context import make_context
    from recsys.ranking.features import FEATURES, feature_matrix
    from recsys.ranking.history import history_from_frame

    checked = 0
    for h, _ in _requests(world)[::10]:
        if h is None:
            continue
        hist = history_from_frame(h, pipe.table)
        ctx = make_context(hist, hist.last_ts, pipe.stats, pipe.params)
        cands = pipe._gen.generate(ctx)
        f = feature_matrix(ctx, cands, pipe.table, pipe._known, pipe.params)
        for name, want in _plain_changed_columns(ctx, cands.rows, pipe.table, pipe.params).items():
            np.testing.assert_array_equal(f[:, FEATURES.index(name)], want, err_msg=name)
            checked += 1
    assert checked > 100
