"""Saving a ranker on a full disk or a read-only data directory: a RankerError that says what is still served, no
partial generation left behind (a ``.tmp-*`` directory was kept for ever, holding the space)."""

from __future__ import annotations

import copy
import errno
from pathlib import Path
from typing import Any

import pytest

from recsys.errors import RankerError
from recsys.ranking import RankingPipeline, save_generation
from recsys.ranking import artifact as artifact_mod
from recsys.ranking.artifact import current_version, damage, save_pipeline
from recsys.ranking.generations import list_generations
from recsys.ranking.stats import ItemStats
from tests.ranking.fixtures import World, make_world, small_params


@pytest.fixture(scope="module")
def pipe() -> RankingPipeline:
    world: World = make_world(per_combo=2, users_per_combo=2, events_per_user=4)
    return RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params(epochs=1))


def _save(pipe: RankingPipeline, root: Path, version: str) -> str:
    p = copy.copy(pipe)
    p.manifest = dict(pipe.manifest, version=version)
    return save_generation(p, root).name


def _no_space(*a: Any, **kw: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name != artifact_mod.SAVE_LOCK)


def test_a_full_disk_mid_save_removes_the_partial_generation(pipe: RankingPipeline, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "rankers"
    served = _save(pipe, root, "v1")
    monkeypatch.setattr(ItemStats, "save", _no_space)
    with pytest.raises(RankerError, match=r"writing a ranker generation under .*rankers failed \(No space left on "
                                          r"device; .*MB free there\); its partial files were removed and v1 is still "
                                          r"served\. Free space and run `recsys train` again"):
        _save(pipe, root, "v2")
    assert _entries(root) == ["CURRENT", "v1"] and current_version(root) == served and damage(root / served) is None


def test_a_failed_switch_removes_the_new_generation(pipe: RankingPipeline, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "rankers"
    _save(pipe, root, "v1")
    monkeypatch.setattr(artifact_mod, "write_pointer", _no_space)  # complete, but never served: not kept either
    with pytest.raises(RankerError, match="v1 is still served"):
        _save(pipe, root, "v2")
    assert _entries(root) == ["CURRENT", "v1"] and [g.version for g in list_generations(root)] == ["v1"]


def test_a_read_only_directory_is_a_ranker_error(pipe: RankingPipeline, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*a: Any, **kw: Any) -> str:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(artifact_mod.tempfile, "mkdtemp", read_only)
    with pytest.raises(RankerError, match=r"failed \(Read-only file system.*nothing is still served\. Make RECSYS_HOME "
                                          "writable"):
        _save(pipe, tmp_path / "rankers", "v1")


def test_a_killed_saves_leftovers_are_removed_by_the_next(pipe: RankingPipeline, tmp_path: Path) -> None:
    root = tmp_path / "rankers"
    (root / ".tmp-killed" / "net.pt").parent.mkdir(parents=True)
    (root / ".tmp-killed" / "net.pt").write_bytes(b"half a file")
    _save(pipe, root, "v1")
    assert _entries(root) == ["CURRENT", "v1"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_torch_reports_a_full_disk_as_one(pipe: RankingPipeline, tmp_path: Path) -> None:
    # torch.save to a path says "[enforce fail at inline_container.cc] unexpected pos", a RuntimeError no caller maps
    assert pipe.net is not None
    (tmp_path / "net.pt").symlink_to("/dev/full")  # every write there fails with ENOSPC
    with pytest.raises(OSError) as got:
        save_pipeline(pipe, tmp_path)
    assert got.value.errno == errno.ENOSPC
