from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.config import IndexSettings
from recsys.errors import UnknownItem, ValidationFailed
from recsys.index import IndexReader, ItemFilter, build_generation, example_query, more_like_these
from tests.index.fixtures import clustered, exact, ids, meta_for


def _reader(root: Path, n: int, factory: str | None = None, **settings: object) -> tuple[IndexReader, np.ndarray]:
    s = IndexSettings(**settings)  # type: ignore[arg-type]
    v = clustered(n, seed=3)
    build_generation(root, ids(n), {"fused": v, "text": v[::-1].copy()}, encoder_id="e", meta=meta_for(ids(n)),
                     factory=factory, settings=s)
    return IndexReader.open(root, settings=s), v


def _rows(hits: list[tuple[str, float]]) -> list[int]:
    return [int(i[1:]) for i, _ in hits]


def _same_allowing_ties(hits: list[tuple[str, float]], v: np.ndarray, q: np.ndarray, want: list[int]) -> None:
    """Approximate/exact results equal the known answer up to ties at the k-th score."""
    got = _rows(hits)
    assert len(got) == len(want)
    s = v @ (q / np.linalg.norm(q))
    assert np.allclose(sorted(s[got], reverse=True), sorted(s[want], reverse=True), atol=1e-5)


def test_exact_known_answer_and_scores(tmp_path: Path) -> None:
    r, v = _reader(tmp_path, 300)
    q = v[:5] + 0.1
    res = r.search(q, 10)
    assert len(res) == 5
    for qi, hits in zip(q, res, strict=True):
        _same_allowing_ties(hits, v, qi, exact(v, qi, 10))
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True)
        assert abs(scores[0] - float(v[_rows(hits)[0]] @ (qi / np.linalg.norm(qi)))) < 1e-5
    assert r.search_one(q[0], 3) == res[0][:3]  # (d,) query
    with pytest.raises(ValidationFailed, match="query vectors"):
        r.search(np.zeros((1, 7), np.float32), 3)
    with pytest.raises(ValidationFailed, match="modality"):
        r.search(q, 3, modality="audio")


@pytest.mark.parametrize("factory", ["HNSW16,Flat", "IVF16,PQ8x4", "IVF16,Flat"])
def test_filtered_search_returns_k_when_k_qualify(tmp_path: Path, factory: str) -> None:
    # exact_subset_max=0 forces the FAISS selector path (with its retries), not the small-subset shortcut
    r, v = _reader(tmp_path, 3000, factory, exact_subset_max=0, ef_search=16, nprobe=2)
    meta = meta_for(ids(3000))
    rare = ItemFilter.of(categories=["rare"])  # keeps 1% of the catalogue: 30 items
    allowed = rare.mask(meta)
    assert allowed.sum() == 30
    for q in v[:5]:
        hits = r.search_one(q, 10, filter=rare)
        assert len(hits) == 10 and all(allowed[_rows(hits)])
        _same_allowing_ties(hits, v, q, exact(v, q, 10, allowed))
        everything = r.search_one(q, 40, filter=rare)
        assert len(everything) == 30  # fewer than k only when fewer qualify
    combo = ItemFilter.of(categories=["c1", "c2"], price_max=30, in_stock=True, attributes={"colour": "red"})
    ok = combo.mask(meta)
    hits = r.search_one(v[7], 15, filter=combo)
    assert len(hits) == 15 and all(ok[_rows(hits)])


def test_small_subset_is_searched_exactly(tmp_path: Path) -> None:
    r, v = _reader(tmp_path, 3000, "HNSW8,Flat", ef_search=8)
    f = ItemFilter.of(categories=["rare"], in_stock=True)
    allowed = f.mask(meta_for(ids(3000)))
    for q in v[10:15]:
        assert _rows(r.search_one(q, 5, filter=f)) == exact(v, q, 5, allowed)


def test_exclude_and_modalities(tmp_path: Path) -> None:
    r, v = _reader(tmp_path, 500, "HNSW16,Flat")
    q = v[42]
    top = r.search_one(q, 5)
    assert top[0][0] == "i00042"
    hidden = {top[0][0], top[1][0], "unknown-id"}
    again = r.search_one(q, 5, hidden)
    assert len(again) == 5 and not hidden & {i for i, _ in again}
    # the text vectors are the fused ones reversed: row j of text = row n-1-j of fused
    assert r.search_one(q, 1, modality="text")[0][0] == "i00457"
    assert r.allowed_ids(ItemFilter.of(categories=["rare"]), exclude={"i00099"}) == ["i00199", "i00299", "i00399",
                                                                                      "i00499"]


def test_similar_and_vectors(tmp_path: Path) -> None:
    r, v = _reader(tmp_path, 200)
    hits = r.similar("i00010", 5)
    assert "i00010" not in {i for i, _ in hits} and len(hits) == 5
    _same_allowing_ties(hits, v, v[10], [x for x in exact(v, v[10], 6) if x != 10][:5])
    vec, ok = r.vectors_of(["i00003", "nope"])
    assert ok.tolist() == [True, False] and np.allclose(vec[0], v[3], atol=1e-6) and not vec[1].any()
    with pytest.raises(UnknownItem):
        r.similar("nope", 3)


def test_more_like_these_rule(tmp_path: Path) -> None:
    # four orthogonal directions a, b, c, d; items are mixes; the rule is normalise(mean(pos) - beta * mean(neg))
    dirs = np.eye(8, dtype=np.float32)[:4]
    rows = {"a": dirs[0], "b": dirs[1], "ab": dirs[0] + dirs[1], "ac": dirs[0] + dirs[2], "a2": dirs[0] * 0.99 +
            dirs[3] * 0.01, "c": dirs[2], "bc": dirs[1] + dirs[2], "a_copy_of_b": dirs[1] + 0.01 * dirs[0]}
    item_ids = list(rows)
    build_generation(tmp_path, item_ids, {"fused": np.stack(list(rows.values()))}, encoder_id="e")
    r = IndexReader.open(tmp_path)
    q = example_query(r, {"a": 2.0, "ab": 1.0}, {"b": 1.0}, beta=0.5)
    a, b = dirs[0], dirs[1]
    want = (2 * a + (a + b) / np.sqrt(2)) / 3 - 0.5 * b
    assert np.allclose(q, want / np.linalg.norm(want), atol=1e-6)
    # tiny weights are shares like any other (in float32 they were zeros, and the query NaN: an empty list)
    assert np.allclose(example_query(r, {"a": 2e-300, "ab": 1e-300}, {"b": 1e-60}, beta=0.5), q, atol=1e-6)
    assert [i for i, _ in more_like_these(r, {"a": 1e-300}, k=3)][0] == "a2"
    hits = more_like_these(r, {"a": 2.0, "ab": 1.0}, {"b": 1.0}, k=3)
    got = [i for i, _ in hits]
    assert got[0] == "a2"  # nearest to "a", away from "b"
    assert not {"a", "ab", "b"} & set(got)  # examples never come back
    assert "a_copy_of_b" not in [i for i, _ in more_like_these(r, ["a"], ["b"], k=10, beta=0.0)]  # near-dup of neg
    assert "a_copy_of_b" in [i for i, _ in more_like_these(r, ["a"], k=10)]
    with pytest.raises(ValidationFailed, match="positive"):
        more_like_these(r, [], ["b"])
    with pytest.raises(UnknownItem):
        more_like_these(r, ["zz"])
    with pytest.raises(ValidationFailed, match="positive numbers"):
        more_like_these(r, {"a": -1.0})
    with pytest.raises(ValidationFailed, match="'a' are both positive and negative"):
        more_like_these(r, ["a", "c"], ["a"])
