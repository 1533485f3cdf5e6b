"""A query on a damaged generation says what to run: `recsys index rollback` only where there is a generation to roll
back to. With the only one damaged it used to advise a rollback that then failed ("no generation older than ...");
it now says what `recsys index verify` says: build a new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import IndexSettings
from recsys.errors import RecsysError
from recsys.index import IndexReader, build_generation
from recsys.index.layout import generations_dir
from tests.index.fixtures import clustered, ids

LONE = "There is no other generation to roll back to: `recsys index build --full` builds a new one"


def _build(root: Path, seed: int = 0) -> str:
    v = clustered(40, seed=seed)
    return build_generation(root, ids(40), {"fused": v}, encoder_id="e").generation_id


def _flip(root: Path, gid: str, name: str, at: int) -> None:
    f = next((generations_dir(root) / gid).rglob(name))
    data = bytearray(f.read_bytes())
    data[at:at + 10] = b"(" * 10  # same size: only hashing sees it, or the loader when sizes alone are checked
    f.write_bytes(bytes(data))


def test_the_only_generation_damaged_advises_a_build_not_a_rollback(tmp_path: Path) -> None:
    gid = _build(tmp_path)
    _flip(tmp_path, gid, "fused.faiss", 100)
    with pytest.raises(RecsysError, match=f"generation {gid} is damaged") as hashed:
        IndexReader.open(tmp_path)
    assert str(hashed.value).endswith(LONE) and "serves the previous" not in str(hashed.value)


def test_an_unreadable_only_generation_advises_a_build_not_a_rollback(tmp_path: Path) -> None:
    gid = _build(tmp_path)
    _flip(tmp_path, gid, "fused.vectors.npy", 10)
    with pytest.raises(RecsysError, match=f"generation {gid} could not be read") as read:
        IndexReader.open(tmp_path, settings=IndexSettings(verify_on_load_mb=0))  # sizes only: the loader trips
    assert str(read.value).endswith(LONE) and "serves the previous" not in str(read.value)


def test_a_damaged_generation_with_an_older_one_still_advises_the_rollback(tmp_path: Path) -> None:
    _build(tmp_path)
    second = _build(tmp_path, seed=1)
    _flip(tmp_path, second, "fused.faiss", 100)
    with pytest.raises(RecsysError, match="`recsys index rollback` serves the previous generation"):
        IndexReader.open(tmp_path)
