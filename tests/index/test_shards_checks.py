"""Shards that do not belong together are refused with a message naming the shard, instead of silently wrong
answers: another trained quantizer, another dimension, repeated or overlapping rows, and other misuse."""

from __future__ import annotations

import ctypes
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.config import IndexSettings
from recsys.errors import ValidationFailed
from recsys.index.shards import merge_on_disk, open_merged, open_shards, sidecar_path, train_empty, write_shard
from tests.index.fixtures import clustered

FACTORY = "IVF4,PQ4x4"  # 2-byte codes at d=16 and at d=32 alike: FAISS alone cannot tell them apart


def _pair(tmp_path: Path, v: np.ndarray, trained: Any, other: Any | None = None) -> tuple[Path, Path]:
    """Shards of rows 0..599 and 600..1199, the second written from ``other`` when given."""
    a = write_shard(trained, v[:600], 0, tmp_path / "a.faiss")
    b = write_shard(other if other is not None else trained, v[600:], 600, tmp_path / "b.faiss")
    return a, b


@pytest.fixture(scope="module")
def v() -> np.ndarray:
    return clustered(1200, 16, centres=6)


@pytest.fixture(scope="module")
def trained(v: np.ndarray) -> Any:
    return train_empty(v[::2], FACTORY, IndexSettings())


@pytest.mark.parametrize("sidecars", [True, False], ids=["sidecar", "legacy-no-sidecar"])
def test_shard_of_another_training_is_refused(tmp_path: Path, v: np.ndarray, trained: Any, sidecars: bool) -> None:
    other = train_empty(v[1::2], FACTORY, IndexSettings())  # same factory, another sample: other codebooks
    a, b = _pair(tmp_path, v, trained, other)
    if not sidecars:  # shards written before sidecars existed: the quantizer is read from the shard file itself
        sidecar_path(a).unlink()
        sidecar_path(b).unlink()
    with pytest.raises(ValidationFailed, match=r"b\.faiss was written from another trained quantizer than the "
                                                r"trained index"):
        merge_on_disk(trained, [a, b], tmp_path / "m")
    with pytest.raises(ValidationFailed, match=r"b\.faiss was written from another trained quantizer than the "
                                                r"first shard .*a\.faiss"):
        open_shards([a, b])
    assert not (tmp_path / "m").exists()  # refused before anything is written


def test_shard_of_another_dimension_is_refused(tmp_path: Path, v: np.ndarray, trained: Any) -> None:
    import faiss

    wide = clustered(1200, 32, centres=6)
    t32 = train_empty(wide[::2], FACTORY, IndexSettings())
    assert faiss.extract_index_ivf(t32).code_size == faiss.extract_index_ivf(trained).code_size
    a = write_shard(trained, v[:600], 0, tmp_path / "a.faiss")
    c = write_shard(t32, wide[600:], 600, tmp_path / "c.faiss")
    with pytest.raises(ValidationFailed, match=r"c\.faiss does not belong with the trained index: its dimension d "
                                                r"is 32, not 16"):
        merge_on_disk(trained, [a, c], tmp_path / "m")
    with pytest.raises(ValidationFailed, match=r"c\.faiss does not belong with the first shard .*: its dimension"):
        open_shards([a, c])


def test_other_nlist_filled_index_missing_or_foreign_file_are_refused(tmp_path: Path, v: np.ndarray,
                                                                      trained: Any) -> None:
    import faiss

    a, b = _pair(tmp_path, v, trained)
    ivf8 = train_empty(v[::2], "IVF8,PQ4x4", IndexSettings())
    e = write_shard(ivf8, v[600:], 600, tmp_path / "e.faiss")
    with pytest.raises(ValidationFailed, match=r"e\.faiss .* nlist is 8, not 4"):
        merge_on_disk(trained, [a, e], tmp_path / "m")
    with pytest.raises(ValidationFailed, match=r"e\.faiss .* nlist is 8, not 4"):
        open_shards([a, e])
    filled = faiss.clone_index(trained)
    filled.add(v)
    with pytest.raises(ValidationFailed, match="not a filled one"):
        merge_on_disk(filled, [a, b], tmp_path / "m")
    with pytest.raises(ValidationFailed, match=r"missing\.faiss does not exist"):
        merge_on_disk(trained, [a, tmp_path / "missing.faiss"], tmp_path / "m")
    with pytest.raises(ValidationFailed, match=r"missing\.faiss does not exist"):
        open_shards([a, tmp_path / "missing.faiss"])
    (tmp_path / "junk.faiss").write_bytes(b"not an index")
    with pytest.raises(ValidationFailed, match=r"junk\.faiss is not a readable FAISS index"):
        open_shards([a, tmp_path / "junk.faiss"])


def test_repeated_and_overlapping_shards_are_refused(tmp_path: Path, v: np.ndarray, trained: Any) -> None:
    a, b = _pair(tmp_path, v, trained)
    for shards in ([a, a, b], [a, b, tmp_path / "." / "a.faiss"]):
        with pytest.raises(ValidationFailed, match=r"a\.faiss is given twice"):
            merge_on_disk(trained, shards, tmp_path / "m")
        with pytest.raises(ValidationFailed, match=r"a\.faiss is given twice"):
            open_shards(shards)
    late = write_shard(trained, v[500:700], 500, tmp_path / "late.faiss")  # rows 500..699 overlap both
    with pytest.raises(ValidationFailed, match=r"a\.faiss \(rows 0\.\.599\) and .*late\.faiss \(rows 500\.\.699\) "
                                                "overlap"):
        merge_on_disk(trained, [b, late, a], tmp_path / "m")
    copy = tmp_path / "copy.faiss"
    shutil.copy(a, copy)  # a copy without its sidecar: the rows are read from the shard's ids
    with pytest.raises(ValidationFailed, match=r"a\.faiss \(rows 0\.\.599\) and .*copy\.faiss \(rows 0\.\.599\)"):
        open_shards([a, b, copy])


def test_sidecar_records_the_shard_and_a_stale_one_is_not_trusted(tmp_path: Path, v: np.ndarray, trained: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    a, b = _pair(tmp_path, v, trained)
    record = json.loads(sidecar_path(b).read_text())
    assert (record["first_row"], record["count"], record["d"], record["nlist"]) == (600, 600, 16, 4)
    assert len(record["quantizer"]) == 64 and record["quantizer"] == json.loads(sidecar_path(a).read_text())[
        "quantizer"]
    shutil.copy(sidecar_path(a), sidecar_path(b))  # b's sidecar now claims rows 0..599: it must not be believed
    group = open_shards([a, b])  # believed, it would make a and b overlap
    assert group.ntotal == len(v)
    assert "b.faiss.json does not describe it" in caplog.text


def test_merge_keeps_stdout_clean(tmp_path: Path, v: np.ndarray, trained: Any,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    a, b = _pair(tmp_path, v, trained)
    capfd.readouterr()
    merged = open_merged(merge_on_disk(trained, [a, b], tmp_path / "m"))
    ctypes.CDLL(None).fflush(None)  # FAISS printf()s: flush C's buffer so whatever it held shows up now
    out = capfd.readouterr().out
    assert out == "" and merged.ntotal == len(v)
