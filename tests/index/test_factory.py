from __future__ import annotations

import numpy as np

from recsys.config import IndexSettings
from recsys.index import choose_factory
from recsys.index.factory import exact_topk, make_index, pq_code, rerank, sampled_recall
from tests.index.fixtures import clustered


def test_choice_by_size_and_override() -> None:
    s = IndexSettings(exact_threshold=50_000, ivf_threshold=2_000_000, hnsw_m=32)
    assert choose_factory(49_999, 384, s) == "Flat"
    assert choose_factory(50_000, 384, s) == "HNSW32,Flat"
    assert choose_factory(5_000_000, 384, s) == "OPQ96,IVF1024,PQ96x7"  # lists capped by the 100k training sample
    big_sample = IndexSettings(exact_threshold=50_000, ivf_threshold=2_000_000, train_sample=1_000_000)
    assert choose_factory(5_000_000, 512, big_sample) == "OPQ128,IVF8192,PQ128x5"
    assert choose_factory(10, 384, IndexSettings(factory="IVF4,Flat")) == "IVF4,Flat"


def test_pq_code_stays_under_100_bytes_per_item() -> None:
    for d in (64, 128, 256, 384, 512, 768, 1024):
        m, _, bits = pq_code(d).partition("x")
        assert d % int(m) == 0 and int(m) * int(bits or 8) / 8 + 8 <= 96


def test_exact_topk_and_rerank() -> None:
    v = clustered(1000)
    q = clustered(5, seed=9)
    s, rows = exact_topk(v, q, 7, chunk=128)  # chunked == unchunked
    full = q @ v.T
    want = np.argsort(-full, axis=1)[:, :7]
    assert np.allclose(s, np.take_along_axis(full, want, 1), atol=1e-6)
    short = np.concatenate([rows[:, ::-1], np.full((5, 2), -1)], axis=1)  # shuffled shortlist with padding
    rs, rr = rerank(v, q, short, 3)
    assert (rr == rows[:, :3]).all() and np.allclose(rs, s[:, :3], atol=1e-6)


def test_sampled_recall_is_measured_for_approximate_indexes() -> None:
    v = clustered(2000)
    s = IndexSettings(ef_search=64)
    assert sampled_recall(make_index(v, "Flat", s), v, s) == 1.0
    r = sampled_recall(make_index(v, "HNSW16,Flat", s), v, s)
    assert 0.8 <= r <= 1.0
    r_pq = sampled_recall(make_index(v, "IVF8,PQ8x4", s), v, s)  # re-ranked like the reader does
    assert 0.5 <= r_pq <= 1.0


def test_graph_order_relayout_keeps_every_answer() -> None:
    from recsys.index.factory import graph_order, relayout

    v = clustered(3000)
    q = clustered(20, seed=5)
    s = IndexSettings(ef_search=64)
    index = make_index(v, "HNSW16,Flat", s)
    _, before = index.search(q, 10)
    order = graph_order(index)
    assert order is not None and sorted(order.tolist()) == list(range(len(v)))  # a permutation
    assert relayout(index, order)
    _, after = index.search(q, 10)
    assert (order[after] == before).all()  # the same neighbours, now at their new positions
    assert graph_order(make_index(v, "Flat", s)) is None  # only HNSW graphs are laid out


def test_a_factory_that_cannot_be_filled_is_a_message() -> None:
    import pytest

    from recsys.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match=r"'IDMap,Flat' cannot be filled .*without IDMap"):
        make_index(clustered(50), "IDMap,Flat", IndexSettings())
