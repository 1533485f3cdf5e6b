"""Ranker rollback follows index rollback's two rules: a ``CURRENT`` naming a generation that is gone serves the
newest usable one (not "nothing older"), and the switch runs under the lock a ranker save takes to switch."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from recsys.errors import NotFound, RankerError
from recsys.index.layout import build_lock
from recsys.ranking import RankingPipeline
from recsys.ranking import generations as G
from recsys.ranking.artifact import SAVE_LOCK, current_version, write_pointer
from recsys.ranking.generations import rollback
from tests.ranking.small import pipe as pipe  # module fixtures
from tests.ranking.small import world as world
from tests.ranking.test_generations import _save


def test_a_dangling_current_serves_the_newest_usable_generation(pipe: RankingPipeline, tmp_path: Path) -> None:
    root = tmp_path / "rankers"
    a = _save(pipe, root, "a")
    b = _save(pipe, root, "b")
    _save(pipe, root, "c", encoder_id="another-encoder")  # newest, but trained on other vectors
    write_pointer(root, "gone")  # deleted by hand, or lost with a disk
    assert rollback(root, encoder_id="test-encoder", dim=pipe.dim) == b
    assert current_version(root) == b
    write_pointer(root, "gone")
    (root / b / "stats.npz").write_bytes(b"truncated")  # damaged: the next one down serves
    assert rollback(root, encoder_id="test-encoder", dim=pipe.dim) == a


def test_a_dangling_current_with_nothing_usable_says_so(pipe: RankingPipeline, tmp_path: Path) -> None:
    root = tmp_path / "rankers"
    _save(pipe, root, "other", encoder_id="another-encoder")
    write_pointer(root, "gone")
    with pytest.raises(NotFound, match="CURRENT names 'gone', which is not a complete generation") as e:
        rollback(root, encoder_id="test-encoder", dim=pipe.dim)
    assert "older than" not in e.value.message and "recsys train" in e.value.message
    assert current_version(root) == "gone"  # nothing changed


def test_rollback_takes_the_save_lock(pipe: RankingPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "rankers"
    a = _save(pipe, root, "a")
    b = _save(pipe, root, "b")
    held, done = threading.Event(), threading.Event()

    def hold() -> None:  # a `recsys train` in the middle of switching CURRENT
        with build_lock(root, SAVE_LOCK):
            held.set()
            done.wait()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    held.wait()
    monkeypatch.setattr(G, "ROLLBACK_WAIT_S", 0)  # refused at once instead of waiting for the holder
    try:
        with pytest.raises(RankerError, match=f"still holds {SAVE_LOCK}") as e:
            rollback(root, encoder_id="test-encoder", dim=pipe.dim)
        assert "nothing changed" in e.value.message
        assert current_version(root) == b
    finally:
        done.set()
        t.join()
    assert rollback(root, encoder_id="test-encoder", dim=pipe.dim) == a  # once the save is done


# An OSError under the lock says what to do by its cause: a full disk is not "make RECSYS_HOME writable".
@pytest.mark.parametrize(("code", "fix"), [(errno.ENOSPC, "Free space"), (errno.EROFS, "Make RECSYS_HOME writable")])
def test_a_failed_switch_names_its_fix(pipe: RankingPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       code: int, fix: str) -> None:
    root = tmp_path / "rankers"
    a = _save(pipe, root, "a")
    _save(pipe, root, "b")

    def failed(*_: object, **__: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(G, "write_pointer", failed)
    with pytest.raises(RankerError, match=f"nothing changed. {fix} and run it again"):
        rollback(root, a)
    assert current_version(root) == "b"
