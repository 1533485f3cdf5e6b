"""A vectors snapshot is read without running code from it: its ids are numpy object arrays, stored pickled, and
``np.load(allow_pickle=True)`` ran whatever a planted file (a backup restored from elsewhere) named."""

from __future__ import annotations

import pathlib
from pathlib import Path

import numpy as np
import pytest

from recsys.config import Settings
from recsys.encoders import safe_npz, vectors
from recsys.errors import EncoderError


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


def test_a_snapshot_written_by_recsys_reads_back_whole(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    tower = np.arange(8, dtype=np.float32).reshape(2, 4)
    packed = [np.arange(9, dtype=np.float32), np.ones(9, np.float32)]
    path = vectors.write_snapshot(settings, "enc", 4, ["a", "é-ü"], packed, tower, hashes=["h1", "h2"])
    got = safe_npz.load(path, ("ids", "packed", "tower_text", "hashes", "absent"))
    assert list(got["ids"]) == ["a", "é-ü"] and list(got["hashes"]) == ["h1", "h2"] and "absent" not in got
    np.testing.assert_array_equal(got["packed"], np.stack(packed))
    np.testing.assert_array_equal(vectors.load_tower_text(settings, "enc", ["é-ü", "x"]), [tower[1], np.zeros(4)])


def test_a_planted_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    marker = tmp_path / "RAN"
    ids = np.empty(1, dtype=object)
    ids[0] = _Planted(marker)
    d = vectors.snapshot_dir(settings, "enc")
    d.mkdir(parents=True)
    with open(d / "vectors.npz", "wb") as f:
        np.savez(f, ids=ids, tower_text=np.zeros((1, 4), np.float32), packed=np.zeros((1, 9), np.float32))
    with pytest.raises(Exception, match="not part of an array of strings"):
        vectors.load_tower_text(settings, "enc", ["a"])
    with pytest.raises(EncoderError, match="damaged"):
        vectors.load_item_vectors(settings, encoder=_encoder("enc"))  # type: ignore[arg-type]
    assert not marker.exists()


def _encoder(enc_id: str) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(id=enc_id, dim=4)
