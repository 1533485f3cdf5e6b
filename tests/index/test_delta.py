from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.config import IndexSettings
from recsys.errors import IncompatibleArtifact
from recsys.index import IndexReader, ItemFilter, build_delta_generation, build_generation, list_generations, prune
from recsys.index.meta import ItemMeta
from tests.index.fixtures import clustered, ids, meta_for

S = IndexSettings(keep_generations=10)


def _base(root: Path, n: int = 400) -> np.ndarray:
    v = clustered(n, seed=5)
    build_generation(root, ids(n), {"fused": v, "image": v}, present={"image": np.arange(n) % 4 != 0},
                     encoder_id="e", meta=meta_for(ids(n)), factory="HNSW16,Flat", settings=S)
    return v


def test_delta_adds_changes_and_removes(tmp_path: Path) -> None:
    v = _base(tmp_path)
    base = IndexReader.open(tmp_path, settings=S)
    probe = -v[7]  # a direction no item points to yet
    new_ids = ["new1", "i00007"]  # one new item, one changed (its vector flips)
    nv = np.stack([probe, probe * 0.9 + 0.1 * v[1]])
    meta = ItemMeta.build(new_ids, category=["fresh", "fresh"], price=[1.0, 2.0])
    m = build_delta_generation(tmp_path, new_ids, {"fused": nv, "image": nv}, encoder_id="e", meta=meta,
                               present={"image": np.array([True, False])}, removed=["i00003"], settings=S)
    assert m.kind == "delta" and m.base_generation == base.generation_id and m.item_count == 400
    r = IndexReader.open(tmp_path, settings=S)
    top = [i for i, _ in r.search_one(probe, 3)]
    assert top[:2] == ["new1", "i00007"]
    assert "i00003" not in r and "i00003" not in {i for i, _ in r.search_one(v[3], 20)}
    assert not {i for i, _ in r.search_one(v[7], 20)} & {"i00003"}
    # changed item: only its new version is served, in filters too
    assert np.allclose(r.vector_of("i00007"), nv[1] / np.linalg.norm(nv[1]), atol=1e-6)
    assert [i for i, _ in r.search_one(probe, 5, filter=ItemFilter.of(categories=["fresh"]))] == ["new1", "i00007"]
    assert [i for i, _ in r.search_one(probe, 5, modality="image")][0] == "new1"  # i00007 lost its image
    # the served generation before the delta is untouched
    assert [i for i, _ in base.search_one(v[3], 1)] == ["i00003"]


def test_chained_deltas_merge_and_survive_pruning(tmp_path: Path) -> None:
    v = _base(tmp_path)
    d = v.shape[1]
    rng = np.random.default_rng(0)
    for step in range(3):
        nv = rng.standard_normal((2, d)).astype(np.float32)
        build_delta_generation(tmp_path, [f"n{step}", "i00010"], {"fused": nv, "image": nv}, encoder_id="e",
                               removed=[f"n{step - 1}"] if step else (), settings=S)
    m = list_generations(tmp_path)[-1]
    assert len(m.segments) == 2 and m.segments[1]["count"] == 3  # n1 (dead), n2, i00010 once
    prune(tmp_path, keep=1)  # deletes the base: the delta holds hard links to its files
    r = IndexReader.open(tmp_path, settings=S)
    assert len(r) == 400 - 1 + 1 + 1  # base - old i00010 + new i00010 + n2
    assert "n2" in r and "n0" not in r and "n1" not in r
    assert r.search_one(nv[0], 1)[0][0] == "n2"
    assert [i for i, _ in r.search_one(v[10], 400)].count("i00010") == 1


def test_delta_refuses_other_encoder(tmp_path: Path) -> None:
    v = _base(tmp_path)
    with pytest.raises(IncompatibleArtifact):
        build_delta_generation(tmp_path, ["x"], {"fused": v[:1], "image": v[:1]}, encoder_id="other", settings=S)
