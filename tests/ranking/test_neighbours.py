"""Kept neighbour lists give the exact product's top k of a maximum (up to float rounding), the same lists whatever
product found them; the collector keeps first mentions."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from recsys.ranking.candidates import SOURCES, _Collector
from recsys.ranking.neighbours import Neighbours, top_k


def _vectors(n: int, d: int, seed: int, duplicates: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d)).astype(np.float32)
    if duplicates:  # variants with the same text: identical vectors, so ties everywhere
        v[rng.integers(0, n, duplicates)] = v[rng.integers(0, n, duplicates)]
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("duplicates", [0, 300])
def test_top_of_max_equals_the_exact_product(duplicates: int) -> None:
    v = _vectors(1500, 24, seed=duplicates, duplicates=duplicates)
    nb = Neighbours(v)
    rng = np.random.default_rng(7)
    for _ in range(40):
        latest = rng.choice(len(v), size=int(rng.integers(1, 11)), replace=False)
        k = int(rng.integers(1, nb.k + 1))
        best = (v[latest] @ v.T).max(axis=0)
        want = top_k(best, k)
        got = nb.top_of_max(latest, k)
        assert got is not None and len(got) == len(want)
        # the same list up to float rounding: a product row by row and one of all rows differ in the last bit
        # (an item with itself is 1 +- 1e-7), so only items within 1e-6 of each other may trade places
        np.testing.assert_allclose(best[got], best[want], atol=1e-6, rtol=0)
        differ = np.setxor1d(got, want)
        assert np.all(np.abs(best[differ] - best[want[-1]]) < 1e-6)
    assert nb.top_of_max(np.array([0]), nb.k + 1) is None  # more than kept: the caller takes the exact product
    assert copy.deepcopy(nb).top_of_max(np.array([3, 4]), 10).tolist() == nb.top_of_max(np.array([3, 4]), 10).tolist()


def test_top_k_breaks_ties_by_lower_index() -> None:
    s = np.array([0.5, 0.9, 0.5, 0.9, 0.5, -np.inf, 0.1])
    assert top_k(s, 3).tolist() == [1, 3, 0]
    assert top_k(s, 10).tolist() == [1, 3, 0, 2, 4, 6]


def test_collector_keeps_first_appearance_and_first_rank() -> None:
    col = _Collector()
    col.add("interest", [5, 3, 9])
    col.add("interest", [3, 7])  # a second interest query: 3 keeps its first rank (1), 7 gets rank 1 of this list
    col.add("cooc", [9, 5])
    col.add("popular", [])
    c = col.build()
    assert c.rows.tolist() == [5, 3, 9, 7]
    i, co = SOURCES.index("interest"), SOURCES.index("cooc")
    assert c.ranks[:, i].tolist() == [0, 1, 2, 1]
    assert c.ranks[:, co].tolist() == [1, 1000, 0, 1000]
    assert c.flags.sum(axis=1).tolist() == [2, 1, 2, 1]
    assert len(_Collector().build()) == 0


def test_content_source_from_kept_lists_equals_the_search() -> None:
    from recsys.ranking import RankingPipeline
    from recsys.ranking.context import make_context
    from recsys.ranking.history import history_from_frame
    from tests.ranking.fixtures import make_world, small_params, user_events

    world = make_world(per_combo=12)
    pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())
    gen = pipe._gen
    searched = copy.copy(gen)
    searched._near = None  # every content query through the vector search
    assert gen._near is not None
    co = SOURCES.index("content")
    for items, exclude, extra in [(["dress-red-0", "hat-blue-3", "dress-red-4"], set(), 0),
                                  (["bag-green-1"], {"bag-green-2", "bag-green-5"}, 20),
                                  (["shoe-red-0", "shoe-red-1"], {f"shoe-red-{i}" for i in range(12)}, 3)]:
        h = history_from_frame(user_events(items), pipe.table)
        ctx = make_context(h, h.last_ts, pipe.stats, pipe.params)
        a, b = gen.generate(ctx, exclude, extra), searched.generate(ctx, exclude, extra)
        assert a.rows.tolist() == b.rows.tolist()
        np.testing.assert_array_equal(a.ranks[:, co], b.ranks[:, co])
        assert not {pipe.table.ids[r] for r in a.rows} & exclude


def test_lists_computed_ahead_equal_those_made_on_first_sight() -> None:
    v = _vectors(700, 16, seed=3, duplicates=150)
    nb, lazy = Neighbours(v), Neighbours(v)
    served = nb.of(5)  # a list a request already used keeps its exact bits when the rest is computed ahead
    assert nb.warm() == len(v) - 1 and nb.warmed == 1.0 and len(nb._lists) == 0
    got = nb.of(5)
    assert got[0].tolist() == served[0].tolist() and np.array_equal(got[1], served[1])
    for row in range(len(v)):
        (a, sa), (b, sb) = nb.of(row), lazy.of(row)
        assert a.dtype == np.int64 and len(a) == nb.k
        assert a.tolist() == b.tolist() and np.array_equal(sa, sb)  # bit for bit: see the next test
    assert nb.warm() == 0  # nothing left to compute


def test_a_list_is_the_same_whatever_product_found_it() -> None:
    """A block's product and one row's differ in the last bit; near-tied items then traded places, and the server
    (lists computed ahead in blocks) served other lists than the CLI (lists made on first sight)."""
    rng = np.random.default_rng(11)
    base = _vectors(600, 96, seed=5)
    v = np.repeat(base, 4, axis=0) + rng.normal(scale=3e-8, size=(2400, 96)).astype(np.float32)  # near-ties
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ahead, one, batch = Neighbours(v), Neighbours(v), Neighbours(v)
    ahead.warm()
    rows = rng.choice(len(v), size=120, replace=False).tolist()
    for i in range(0, len(rows), 7):
        batch.prefetch(rows[i: i + 7])  # a request's few new items in one product
    for r in rows:
        (a, sa), (b, sb), (c, sc) = ahead.of(r), one.of(r), batch.of(r)
        assert a.tolist() == b.tolist() == c.tolist(), r
        assert np.array_equal(sa, sb) and np.array_equal(sa, sc)
        exact = v[a].astype(np.float64) @ v[r].astype(np.float64)
        assert np.all(np.diff(exact) <= 1e-12)  # best first by the float64 similarity


def test_computing_ahead_stops_when_asked_and_skips_damaged_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.ranking import neighbours

    monkeypatch.setattr(neighbours, "WARM_BLOCK", 100)
    v = _vectors(350, 8, seed=4)
    nb = Neighbours(v)
    asked: list[int] = []
    assert nb.warm(lambda: asked.append(1) or len(asked) > 2) == 200  # stopped before the third block
    assert nb.warmed == 200 / 350
    assert len(nb.of(300)[0]) == nb.k  # the rest is still computed on first sight
    v[10] = np.nan  # a damaged vector: its list comes out short and stays out of the arrays
    nb = Neighbours(v)
    nb.warm()
    assert nb.warmed == 349 / 350 and len(nb.of(10)[0]) < nb.k


def test_a_zero_vector_shortlists_everyone_and_gets_the_lowest_rows() -> None:
    v = _vectors(9000, 8, seed=6)
    v[3] = 0.0  # every similarity 0: the whole catalogue is the shortlist, summed again in chunks
    rows, sims = Neighbours(v).of(3)
    assert rows.tolist() == list(range(256)) and not sims.any()
