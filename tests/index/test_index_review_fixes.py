"""Index review fixes: a rollback to a generation whose encoder heads were fitted for other towers is refused (and
readiness says search is off when one is served); a FAISS write failure (a full disk) is one error and leaves no
partial files; a data directory that cannot be written is one line, found before vectors are read; a skipped build
removes a killed build's leftovers and prunes; a rollback refuses a path for a generation id, and a running build."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path
from typing import Any

import faiss
import pytest
from typer.testing import CliRunner

from recsys.cli.index import app
from recsys.config import Settings, get_settings
from recsys.errors import IncompatibleArtifact, IndexError_, NotFound
from recsys.index import build_from_catalog, build_generation, current_id, index_root, layout, list_generations
from recsys.store import Store
from tests.index.fixtures import clustered, ids
from tests.index.test_catalog import FakeEncoder, _add_items

LITE_TOWERS = "recsys-lite-towers/f1"
"""The towers id of the default preset (recsys-lite) on the default runtime (auto: onnx or torch, the same id)."""


def _fit_heads(home: Path, version: str, towers: str, *, current: bool = True) -> str:
    """Fitted heads as `recsys encoder fit` leaves them, as far as the servability checks read them."""
    preset = get_settings().encoder.preset
    d = home / "encoders" / preset / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"version": version, "dim": 16, "towers": towers}))
    if current:
        (d.parent / "CURRENT").write_text(version)
    return f"{preset}@{version}"


def _towers_pair(home: Path) -> tuple[str, str]:
    """Generation A of heads fitted for other towers (another runtime's), then B of the configured ones (served)."""
    root = index_root(get_settings())
    old = _fit_heads(home, "v1", LITE_TOWERS + "+int8-text", current=False)
    new = _fit_heads(home, "v2", LITE_TOWERS)
    a = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id=old).generation_id
    b = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id=new).generation_id
    return a, b


# -- D1: heads fitted for other towers -------------------------------------------------------------------------


def test_rollback_refuses_a_generation_of_other_towers_and_names_one_that_fits(home: Path) -> None:
    root, runner = index_root(get_settings()), CliRunner()
    a, b = _towers_pair(home)
    res = runner.invoke(app, ["rollback", "--to", a])
    assert isinstance(res.exception, IncompatibleArtifact) and current_id(root) == b
    said = res.exception.message
    assert f"fitted for towers {LITE_TOWERS}+int8-text, not the configured {LITE_TOWERS}" in said
    assert f"The configured encoder serves {b}" in said and "RECSYS_ENCODER__RUNTIME" in said
    assert runner.invoke(app, ["rollback", "--to", a, "--force"]).exit_code == 0 and current_id(root) == a
    assert runner.invoke(app, ["rollback", "--to", b]).exit_code == 0 and current_id(root) == b  # the way back


def test_readiness_says_search_is_off_when_the_served_index_has_heads_of_other_towers(
        home: Path, sqlite_store: Store) -> None:
    from recsys.serving.generations import Generations

    root = index_root(get_settings())
    a, b = _towers_pair(home)
    st = Generations(get_settings(), sqlite_store).status()
    assert st["ready"] and "search" not in st["not_served"]
    layout.rollback(root, a, force=True)
    st = Generations(get_settings(), sqlite_store).status()
    assert st["ready"] and st["index_generation"] == a and "search" in st["not_served"]
    assert f"not the configured {LITE_TOWERS}" in st["reason"] and f"rollback --to {b}" in st["reason"]


def test_the_configured_towers_id_is_the_loaded_towers_id(tmp_path: Path) -> None:
    from recsys.encoders.encoder import configured_towers_id, load_towers
    from recsys.encoders.registry import get_preset
    from tests.encoders.fixtures import tiny_open_clip_preset

    s = Settings(home=tmp_path / "home")
    s.encoder.device = "cpu"
    s.encoder.preset = tiny_open_clip_preset(s, tmp_path / "ckpt")  # a local checkpoint: its content in the id
    preset = get_preset(s.encoder.preset, s)
    assert configured_towers_id(s, preset) == load_towers(preset, "cpu", s.encoder.runtime, s.home).id
    assert configured_towers_id(s, get_preset("recsys-lite", s)) == LITE_TOWERS
    s.encoder.runtime = "torch"
    assert configured_towers_id(s, get_preset("recsys-lite", s)) == LITE_TOWERS


# -- D2: FAISS write failures --------------------------------------------------------------------------------


def _faiss_write_fails(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    def fail(index: Any, path: str) -> None:
        Path(path).write_bytes(b"\0" * 100)  # what it wrote before the disk filled
        raise RuntimeError(message)

    monkeypatch.setattr(faiss, "write_index", fail)


def test_a_full_disk_inside_faiss_is_one_error_and_leaves_no_partial_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "index"
    served = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    _faiss_write_fails(monkeypatch, "Error in void faiss::write_index(const Index*, IOWriter*, int) at "
                                    "index_write.cpp:499: Error: 'ret == (size * 4)' failed: write error in x.faiss: "
                                    "2006995 != 2048000 (No space left on device)")
    with pytest.raises(IndexError_, match=r"writing an index generation .* failed \(No space left on device; .*"
                                          f"partial files were removed and {served} is still served"):
        build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e")
    assert list(layout.tmp_dir(root).iterdir()) == [] and current_id(root) == served
    assert [m.generation_id for m in list_generations(root)] == [served]


def test_a_faiss_error_that_is_not_io_stays_what_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _faiss_write_fails(monkeypatch, "Error in void faiss::write_index: don't know how to serialize this type of index")
    with pytest.raises(RuntimeError, match="don't know how to serialize"):
        build_generation(tmp_path / "index", ids(40), {"fused": clustered(40)}, encoder_id="e")


# -- D3: a data directory that cannot be written -------------------------------------------------------------


def _read_only(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.EROFS, "Read-only file system", str(args[0]) if args else None)


def test_rollback_on_a_read_only_directory_is_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = index_root(get_settings())
    a = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    b = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    monkeypatch.setattr(layout, "write_text_atomic", _read_only)  # the lock file opens: a read-only CURRENT
    res = CliRunner().invoke(app, ["rollback", "--to", a])
    assert isinstance(res.exception, IndexError_) and current_id(root) == b
    assert res.exception.message.startswith(f"cannot roll back the index generation: {root} cannot be written "
                                            "(Read-only file system); nothing changed")
    import filelock

    monkeypatch.setattr(filelock, "FileLock", _read_only)  # nor the lock file
    with pytest.raises(IndexError_, match=f"cannot roll back the index generation: {root} cannot be written"):
        layout.rollback(root, a)
    with pytest.raises(IndexError_, match=f"cannot build an index generation: {root} cannot be written"):
        build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e")


def test_a_build_on_a_read_only_directory_says_so_before_reading_vectors(
        tmp_path: Path, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.index import locks

    settings, enc = Settings(home=tmp_path / "home"), FakeEncoder()
    _add_items(sqlite_store, 20)
    monkeypatch.setattr(locks, "open", _read_only, raising=False)
    with pytest.raises(IndexError_, match="cannot build an index generation: .*index cannot be written "
                                          r"\(Read-only file system\); nothing changed. To fix it, make it writable"):
        build_from_catalog(sqlite_store, settings, vectors=enc)
    assert enc.calls == 0


# -- D4: a skipped build tidies up -----------------------------------------------------------------------------


def test_a_skipped_build_removes_a_killed_builds_leftovers_and_prunes(tmp_path: Path, sqlite_store: Store) -> None:
    settings, enc = Settings(home=tmp_path / "home"), FakeEncoder()
    settings.index.keep_generations = 5
    _add_items(sqlite_store, 20)
    for _ in range(4):
        build_from_catalog(sqlite_store, settings, vectors=enc, mode="full")
    root = index_root(settings)
    partial = layout.tmp_dir(root) / "20260101T000000000000Z-abcdef.partial"
    (partial / "seg0").mkdir(parents=True)
    (partial / "seg0" / "fused.faiss").write_bytes(b"\0" * 1000)  # a build killed while writing
    settings.index.keep_generations = 2
    rep = build_from_catalog(sqlite_store, settings, vectors=enc)
    assert rep["action"] == "skipped" and not partial.exists()
    assert len(list_generations(root)) == 2 and current_id(root) == rep["generation"]


def test_a_skipped_build_leaves_a_running_builds_files(tmp_path: Path, sqlite_store: Store) -> None:
    settings, enc = Settings(home=tmp_path / "home"), FakeEncoder()
    _add_items(sqlite_store, 20)
    build_from_catalog(sqlite_store, settings, vectors=enc)
    root = index_root(settings)
    partial = layout.tmp_dir(root) / "running.partial"
    partial.mkdir(parents=True)
    with _held_by_another_thread(root):
        assert build_from_catalog(sqlite_store, settings, vectors=enc)["action"] == "skipped"
    assert partial.exists()


# -- D5 and the lead: what a rollback refuses -------------------------------------------------------------------


def test_rollback_refuses_a_path_for_a_generation_id(home: Path) -> None:
    root, runner = index_root(get_settings()), CliRunner()
    a = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    b = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    for given in (f"../generations/{a}", f"{root}/generations/{a}", "..", ".CURRENT"):
        res = runner.invoke(app, ["rollback", "--to", given])
        assert isinstance(res.exception, NotFound), (given, res.exception)
        assert f"{given!r} is not an index generation id" in res.exception.message
        assert (root / layout.POINTER).read_text() == f"{b}\n"
        if "generations/" in given:
            assert f"give the id alone ({a})" in res.exception.message
    assert runner.invoke(app, ["rollback", "--to", a]).exit_code == 0 and current_id(root) == a


class _held_by_another_thread:
    """The build lock of ``root`` held by another thread (a build running) while inside."""

    def __init__(self, root: Path) -> None:
        self.root, self.held, self.release = root, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        with layout.build_lock(self.root):
            self.held.set()
            self.release.wait()

    def __enter__(self) -> None:
        self.thread.start()
        self.held.wait()

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join()


def test_rollback_during_a_build_is_refused_in_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = index_root(get_settings())
    a = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    b = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    monkeypatch.setattr(layout, "ROLLBACK_WAIT_S", 0.05)
    with _held_by_another_thread(root):
        res = CliRunner().invoke(app, ["rollback", "--to", a])
    assert isinstance(res.exception, IndexError_) and current_id(root) == b
    assert "a build (or an API publication)" in res.exception.message and "would be undone" in res.exception.message
    assert CliRunner().invoke(app, ["rollback", "--to", a]).exit_code == 0 and current_id(root) == a
