"""``recsys prune``: what nothing references goes (encoder heads, vector snapshots and caches, ranker generations),
what anything references stays, a dry run removes nothing, a running job refuses it, and a removal cut short leaves
nothing a reader takes for valid."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from recsys.config import Settings, get_settings
from recsys.encoders.cache import VectorCache, _safe
from recsys.prune import prune
from tests.conftest import run_main

P = "recsys-lite"
V0, V1, V2, V3, V4, V5 = (f"2026010{d}T000000000000Z" for d in range(1, 7))
"""V4 is current, V5 newer (a build's fit not switched yet)."""


def _heads(home: Path, version: str, preset: str = P) -> None:
    d = home / "encoders" / preset / version
    d.mkdir(parents=True)
    (d / "heads.pt").write_bytes(b"h" * 1000)
    (d / "manifest.json").write_text(json.dumps({"version": version}), encoding="utf-8")


def _vectors(home: Path, encoder_id: str) -> None:
    d = home / "vectors" / _safe(encoder_id)
    d.mkdir(parents=True)
    (d / "vectors.npz").write_bytes(b"v" * 500)


def _cache(home: Path, encoder_id: str) -> None:
    c = VectorCache(home / "cache" / "vectors" / f"{_safe(encoder_id)}.db")
    c.put_many({"k": np.ones(4, np.float32)})
    c.close()


def _encoder(home: Path, version: str) -> None:
    _heads(home, version)
    _vectors(home, f"{P}@{version}")
    _cache(home, f"{P}@{version}")


def _index_generation(home: Path, gid: str, encoder_id: str) -> None:
    d = home / "index" / "generations" / gid
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"generation_id": gid, "encoder_id": encoder_id}), encoding="utf-8")


def _ranker(home: Path, version: str, encoder_id: str, day: int) -> None:
    d = home / "rankers" / version
    d.mkdir(parents=True)
    (d / "net.pt").write_bytes(b"n" * 200)
    (d / "manifest.json").write_text(json.dumps({"version": version, "encoder_id": encoder_id, "dim": 4,
                                                 "created_at": f"2026-02-{day:02d}T00:00:00+00:00"}),
                                     encoding="utf-8")


def _build(home: Path) -> None:
    """Encoder versions V0..V5 (V4 current); index generations naming V2 (a rollback's target) and V4 (served);
    rankers r1 (V1, named by an experiment), r2..r4 (V3, V3, V4), r5 and r6 (V4, r6 current)."""
    for v in (V0, V1, V2, V3, V4, V5):
        _encoder(home, v)
    (home / "encoders" / P / "CURRENT").write_text(V4, encoding="utf-8")
    _vectors(home, f"{P}@unfitted")
    _vectors(home, "other-preset@unfitted")
    (home / "cache" / "features" / "recsys-lite-towers_f1").mkdir(parents=True)
    _index_generation(home, "g1", f"{P}@{V2}")
    _index_generation(home, "g2", f"{P}@{V4}")
    (home / "index" / "CURRENT").write_text("g2\n", encoding="utf-8")
    for day, (version, enc) in enumerate([("r1", V1), ("r2", V3), ("r3", V3), ("r4", V4), ("r5", V4), ("r6", V4)]):
        _ranker(home, version, f"{P}@{enc}", day + 1)
    (home / "rankers" / "CURRENT").write_text("r6", encoding="utf-8")


EXPERIMENT = {"name": "old-ranker", "variants": [{"name": "control", "share": 0.5},
                                                 {"name": "old", "share": 0.5, "ranker": "ranker-r1"}]}


@pytest.fixture
def built(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home", experiments={"definitions": [EXPERIMENT]})
    _build(s.home)
    return s


def _paths(entries: list[dict[str, Any]]) -> set[str]:
    return {e["path"] for e in entries}


def _enc_paths(version: str) -> set[str]:
    return {f"encoders/{P}/{version}", f"vectors/{P}@{version}", f"cache/vectors/{P}@{version}.db"}


UNREFERENCED = _enc_paths(V0) | _enc_paths(V3) | {f"vectors/{P}@unfitted", "rankers/r2", "rankers/r3", "rankers/r4"}


def _files(home: Path) -> dict[str, int]:
    """Every file but the locks' (empty: taking a lock creates its file) with its size."""
    return {str(p.relative_to(home)): p.stat().st_size for p in home.rglob("*") if p.is_file() and p.suffix != ".lock"}


def test_referenced_artifacts_stay_and_unreferenced_ones_go(built: Settings) -> None:
    home = built.home
    report = prune(built, keep_rankers=2)
    assert report.failed == []
    assert _paths(report.removed) == UNREFERENCED
    kept = {k["path"]: k["reason"] for k in report.kept}
    assert "current heads" in kept[f"encoders/{P}/{V4}"]
    assert "index generation g1" in kept[f"vectors/{P}@{V2}"]  # an index rollback's target keeps its encoder
    assert "current heads" in kept[f"cache/vectors/{P}@{V4}.db"]
    assert "ranker generation r1" in kept[f"encoders/{P}/{V1}"]  # r1 stays for the experiment, so does its encoder
    assert "newer than the current heads" in kept[f"encoders/{P}/{V5}"]
    assert "experiment 'old-ranker'" in kept["rankers/r1"]
    assert kept["rankers/r6"] == "the current ranker" and "newest 2" in kept["rankers/r5"]
    assert "other-preset@unfitted" in {Path(p).name for p in kept}
    assert "cache/features/recsys-lite-towers_f1" in kept
    for rel in UNREFERENCED:
        assert not (home / rel).exists(), rel
    assert not list((home / "cache" / "vectors").glob(f"{P}@{V0}.db*"))  # its WAL and shared memory too
    for rel in kept:
        assert (home / rel).exists(), rel
    assert report.bytes_freed == sum(r["bytes"] for r in report.removed) > 3 * 1000
    from recsys.ranking.generations import list_generations

    assert [g.version for g in list_generations(home / "rankers")] == ["r1", "r5", "r6"]


def test_an_index_generation_kept_for_rollback_keeps_a_ranker_of_its_encoder(built: Settings) -> None:
    """g1 (on V2) is kept for `recsys index rollback`: the newest ranker on V2 stays with it, or the rollback would
    serve no recommendations until a retrain; an older one on V2 goes."""
    _ranker(built.home, "r0a", f"{P}@{V2}", 1)
    _ranker(built.home, "r0b", f"{P}@{V2}", 1)
    report = prune(built, keep_rankers=2)
    kept = {k["path"]: k["reason"] for k in report.kept}
    assert "index generation g1" in kept["rankers/r0b"] and "rollback" in kept["rankers/r0b"]
    assert "rankers/r0a" in _paths(report.removed)


def test_default_keeps_as_many_rankers_as_index_generations(built: Settings) -> None:
    s = built.model_copy(update={"index": built.index.model_copy(update={"keep_generations": 4})})
    report = prune(s)
    assert {"rankers/r3", "rankers/r4"} <= _paths(report.kept) and "rankers/r2" in _paths(report.removed)
    assert f"encoders/{P}/{V3}" in _paths(report.kept)  # r3 stays, trained on V3


def test_a_ranker_newer_than_the_current_one_stays(built: Settings) -> None:
    (built.home / "rankers" / "CURRENT").write_text("r2", encoding="utf-8")
    report = prune(built, keep_rankers=1)
    assert _paths(report.removed) & {"rankers/r2", "rankers/r3", "rankers/r4", "rankers/r5"} == set()
    assert {k["path"]: k["reason"] for k in report.kept}["rankers/r4"].startswith("newer than the current ranker")


def test_dry_run_lists_and_removes_nothing(built: Settings) -> None:
    before = _files(built.home)
    report = prune(built, dry_run=True, keep_rankers=2)
    assert report.dry_run and _paths(report.removed) == UNREFERENCED and report.bytes_freed > 0
    assert _files(built.home) == before


def _cli() -> typer.Typer:
    from recsys.cli.prune import register

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as under `recsys`
    register(app)
    return app


@pytest.fixture
def cli_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    _build(home)
    monkeypatch.setenv("RECSYS_EXPERIMENTS__DEFINITIONS", json.dumps([EXPERIMENT]))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def test_cli_dry_run_text_and_json(cli_home: Path) -> None:
    before = _files(cli_home)
    res = CliRunner().invoke(_cli(), ["prune", "--dry-run", "--keep-rankers", "2"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == len(UNREFERENCED) + 1 and all(x.startswith("would remove") for x in lines[:-1])
    assert lines[-1].startswith(f"dry run: {len(UNREFERENCED)} artifact(s) would be removed") and "MB" in lines[-1]
    assert _files(cli_home) == before
    res = CliRunner().invoke(_cli(), ["prune", "--json", "--keep-rankers", "2"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["dry_run"] is False and _paths(out["removed"]) == UNREFERENCED
    assert {"kind", "path", "bytes"} <= set(out["removed"][0]) and {"kind", "path", "reason"} <= set(out["kept"][0])
    assert out["bytes_freed"] == sum(r["bytes"] for r in out["removed"])


def test_a_running_job_refuses_it(cli_home: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from filelock import FileLock

    before = _files(cli_home)
    lock = FileLock(str(cli_home / "jobs.lock"))
    lock.acquire()  # as `recsys build`, `train` or `encoder fit` holds it
    try:
        code, err = run_main(monkeypatch, capsys, "prune")
    finally:
        lock.release()
    assert code != 0 and "a job" in err and "is running" in err and "again after it finishes" in err
    assert len(err.strip().splitlines()) == 1
    assert _files(cli_home) == before


def test_a_removal_cut_short_leaves_nothing_that_reads_as_valid(built: Settings,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.encoders.encoder import get_encoder
    from recsys.encoders.vectors import load_item_vectors
    from recsys.errors import EncoderError, NotFound
    from recsys.ranking.generations import list_generations

    def fail(path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:  # a cache's database goes, its WAL cannot
        if self.name.endswith(("-wal", "-shm")):
            fail(self)
        real_unlink(self, missing_ok=missing_ok)

    def damaged(*args: Any, **kwargs: Any) -> None:  # its WAL cannot be folded in either
        raise sqlite3.DatabaseError("file is not a database")

    home = built.home
    wal = home / "cache" / "vectors" / f"{P}@{V0}.db-wal"
    wal.write_bytes(b"")  # as a crashed process leaves it
    monkeypatch.setattr("recsys.prune.shutil.rmtree", fail)
    monkeypatch.setattr("recsys.prune.sqlite3.connect", damaged)
    monkeypatch.setattr(Path, "unlink", unlink)
    report = prune(built, keep_rankers=2)
    monkeypatch.undo()
    assert _paths(report.failed) == UNREFERENCED - {f"cache/vectors/{P}@{V3}.db"} and report.removed
    assert all("Permission denied" in f["error"] for f in report.failed)
    # every directory is still there, and no reader takes any of them for an artifact
    assert (home / "encoders" / P / V0).is_dir() and (home / "rankers" / "r2").is_dir()
    for v in (V0, V3):
        with pytest.raises(NotFound):
            get_encoder(built, version=v)
        with pytest.raises(EncoderError, match="no item vectors"):
            load_item_vectors(built, encoder=SimpleNamespace(id=f"{P}@{v}"))  # type: ignore[arg-type]
    assert [g.version for g in list_generations(home / "rankers")] == ["r1", "r5", "r6"]
    assert wal.exists() and not (home / "cache" / "vectors" / f"{P}@{V0}.db").exists()
    # the next prune finishes them
    again = prune(built, keep_rankers=2)
    assert again.failed == [] and _paths(again.removed) == UNREFERENCED - {f"cache/vectors/{P}@{V3}.db"}
    assert not wal.exists() and not (home / "encoders" / P / V0).exists()


def test_an_artifact_that_cannot_be_removed_fails_alone(cli_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.rmtree

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name == "r3":
            raise FileNotFoundError(2, "No such file or directory", str(Path(path) / "net.pt"))  # vanished mid-way
        real(path, *args, **kwargs)

    monkeypatch.setattr("recsys.prune.shutil.rmtree", rmtree)
    res = CliRunner().invoke(_cli(), ["prune", "--keep-rankers", "2"])
    assert res.exit_code == 1
    assert "could not remove ranker rankers/r3: FileNotFoundError" in res.stderr
    assert "rankers/r3" not in res.stdout and "removed  ranker   rankers/r4" in res.stdout
    assert "1 could not be removed" in res.stdout.strip().splitlines()[-1]
    assert not (cli_home / "rankers" / "r4").exists() and not (cli_home / "encoders" / P / V0).exists()


def test_an_unreadable_index_manifest_keeps_every_ranker(built: Settings) -> None:
    """Any ranker may be the one the unreadable generation needs: none is removed (the encoders stay likewise),
    whatever the order the generations are read in."""
    _index_generation(built.home, "g0", f"{P}@{V1}")
    (built.home / "index" / "generations" / "g0" / "manifest.json").write_text("{not json", encoding="utf-8")
    report = prune(built, keep_rankers=1)
    assert not any(r["kind"] in ("encoder", "vectors", "cache", "ranker") for r in report.removed)
    assert "g0's manifest cannot be read" in {k["path"]: k["reason"] for k in report.kept}["rankers/r3"]


def test_unreadable_references_keep_what_they_may_name(built: Settings) -> None:
    (built.home / "index" / "generations" / "g1" / "manifest.json").write_text("{not json", encoding="utf-8")
    report = prune(built.model_copy(update={"experiments": built.experiments.model_copy(
        update={"file": built.home / "missing.json"})}), keep_rankers=2)
    assert not any(r["kind"] in ("encoder", "vectors", "cache", "ranker") for r in report.removed)
    reasons = {k["path"]: k["reason"] for k in report.kept}
    assert "index generation g1's manifest cannot be read" in reasons[f"encoders/{P}/{V0}"]
    assert "experiments cannot be read" in reasons["rankers/r2"]


def test_a_missing_current_heads_pointer_keeps_every_version(built: Settings) -> None:
    (built.home / "encoders" / P / "CURRENT").unlink()
    report = prune(built, keep_rankers=2)
    assert not {r["path"] for r in report.removed if r["kind"] != "ranker"} - {f"vectors/{P}@unfitted"}
    assert "CURRENT is missing" in {k["path"]: k["reason"] for k in report.kept}[f"encoders/{P}/{V0}"]


def test_an_empty_home_prunes_nothing(tmp_path: Path) -> None:
    report = prune(Settings(home=tmp_path / "nothing"))
    assert report.removed == report.kept == report.failed == [] and not (tmp_path / "nothing").exists()


@pytest.mark.slow  # the session's e2e demo build (shared with the notebook and browser tests)
def test_a_pruned_built_home_still_recommends_verifies_and_rolls_back(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli import _register_commands, app
    from recsys.ranking.artifact import current_version
    from tests.e2e_fixture import built_demo, private_home

    built_home, _ = built_demo(tmp_path_factory)
    home = private_home(built_home, tmp_path / "home")
    monkeypatch.setenv("RECSYS_HOME", str(home))
    get_settings.cache_clear()
    s = Settings(home=home)
    preset = next(p for p in (home / "encoders").iterdir() if p.is_dir())
    cur = (preset / "CURRENT").read_text().strip()
    old = "20000101T000000000000Z"  # an earlier fit nothing names: its heads, snapshot and cache
    shutil.copytree(preset / cur, preset / old)
    shutil.copytree(home / "vectors" / _safe(f"{preset.name}@{cur}"), home / "vectors" / _safe(f"{preset.name}@{old}"))
    shutil.copy(home / "cache" / "vectors" / f"{_safe(f'{preset.name}@{cur}')}.db",
                home / "cache" / "vectors" / f"{_safe(f'{preset.name}@{old}')}.db")
    rankers = home / "rankers"
    served = current_version(rankers)
    assert served is not None
    for year in (2001, 2002, 2003):  # earlier trainings, oldest first
        shutil.copytree(rankers / served, rankers / f"old{year}")
        m = json.loads((rankers / f"old{year}" / "manifest.json").read_text())
        m.update(version=f"old{year}", created_at=f"{year}-01-01T00:00:00+00:00")
        (rankers / f"old{year}" / "manifest.json").write_text(json.dumps(m))
    report = prune(s, keep_rankers=2)
    assert _paths(report.removed) == {f"encoders/{preset.name}/{old}", f"vectors/{preset.name}@{old}",
                                      f"cache/vectors/{preset.name}@{old}.db", "rankers/old2001", "rankers/old2002"}
    assert report.failed == [] and report.bytes_freed > 0
    if not any(c.name == "recommend" for c in app.registered_commands):
        _register_commands()
    runner = CliRunner()
    for args in (["index", "verify"], ["recommend", "user-0001", "--k", "3", "--json"],
                 ["ranker", "rollback", "old2003"], ["recommend", "user-0001", "--k", "3", "--json"]):
        res = runner.invoke(app, args, env={"RECSYS_HOME": str(home)})
        assert res.exit_code == 0, (args, res.output)
    assert current_version(rankers) == "old2003"
    get_settings.cache_clear()
    assert os.path.isdir(preset / cur)
