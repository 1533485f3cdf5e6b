"""Sharded IVF indexes: built chunk by chunk on a shared quantizer, they answer exactly like one index."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from recsys.config import IndexSettings
from recsys.errors import ValidationFailed
from recsys.index.factory import search_params
from recsys.index.shards import merge_on_disk, open_merged, open_shards, train_empty, write_shard
from tests.index.fixtures import clustered

FACTORY = "IVF8,PQ8x4"


def _build(tmp_path: Path) -> tuple[np.ndarray, object, list[Path]]:
    v = clustered(3000, 32, centres=12)
    trained = train_empty(v[::3], FACTORY, IndexSettings())
    bounds = [0, 1000, 1700, 3000]
    shards = [write_shard(trained, v[a:b], a, tmp_path / "shards" / f"{i}.faiss")
              for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]
    return v, trained, shards


def _search(index: object, q: np.ndarray, nprobe: int = 8) -> tuple[np.ndarray, np.ndarray]:
    return index.search(q, 10, params=search_params(index, None, ef_search=0, nprobe=nprobe))  # type: ignore[attr-defined]


def test_shards_answer_like_one_index(tmp_path: Path) -> None:
    import faiss

    v, trained, shards = _build(tmp_path)
    whole = faiss.clone_index(trained)
    whole.add(v)
    q = clustered(20, 32, centres=12, seed=5)
    want_s, want_i = _search(whole, q)

    merged = merge_on_disk(trained, shards, tmp_path / "gen")
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "gen", moved)  # the lists file travels with the index (generation directories move)
    on_disk = open_merged(moved / merged.name)
    assert on_disk.ntotal == len(v)
    got_s, got_i = _search(on_disk, q)
    assert (got_i == want_i).all() and np.allclose(got_s, want_s, atol=1e-5)

    group = open_shards(shards)
    assert group.ntotal == len(v)
    got_s, got_i = _search(group, q)  # per-call params reach every shard
    assert np.allclose(got_s, want_s, atol=1e-5)
    assert (np.sort(got_i, 1) == np.sort(want_i, 1)).mean() > 0.95  # items with equal scores may swap


def test_bad_input_is_refused(tmp_path: Path) -> None:
    v = clustered(600, 16)
    with pytest.raises(ValidationFailed, match="IVF"):
        train_empty(v, "HNSW8,Flat", IndexSettings())
    trained = train_empty(v, "IVF4,PQ4x4", IndexSettings())
    with pytest.raises(ValidationFailed, match=r"\(n, 16\)"):
        write_shard(trained, v[:, :8], 0, tmp_path / "s.faiss")
    with pytest.raises(ValidationFailed, match="no shards"):
        merge_on_disk(trained, [], tmp_path / "m")
    write_shard(trained, v, 0, tmp_path / "s.faiss")
    (tmp_path / "m").mkdir()
    with pytest.raises(ValidationFailed, match="missing"):
        open_merged(tmp_path / "m" / "merged.faiss")
