"""``recsys backup DEST``: what a backup holds (the served artifacts, not old ones), the refusals (DEST not empty, a
job running), a backup cut short leaving nothing, a PostgreSQL home (no database copy, a pg_dump line without the
password), and end to end: a backup of a built demo taken while events are written serves the same lists."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import recsys.backup as backup_module
from recsys.backup import MANIFEST_FILE, backup
from recsys.config import Settings, get_settings
from recsys.errors import RecsysError
from tests.conftest import run_main

P, OLD, CUR = "recsys-lite", "20260101T000000000000Z", "20260102T000000000000Z"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _artifacts(home: Path) -> None:
    """Two of each: the old ones (index g0, ranker r0, heads OLD) are not served and stay out of a backup."""
    for gid, version in (("g0", OLD), ("g1", CUR)):
        _write(home / "index" / "generations" / gid / "manifest.json", json.dumps({"encoder_id": f"{P}@{version}"}))
        _write(home / "index" / "generations" / gid / "seg0" / "ids.npy", gid * 100)
        _write(home / "encoders" / P / version / "manifest.json", "{}")
        _write(home / "encoders" / P / version / "heads.pt", "h" * 100)
        _write(home / "vectors" / f"{P}@{version}" / "vectors.npz", "v" * 100)
    for rid, version in (("r0", OLD), ("r1", CUR)):
        _write(home / "rankers" / rid / "manifest.json", json.dumps({"version": rid, "encoder_id": f"{P}@{version}"}))
    _write(home / "index" / "CURRENT", "g1\n")
    _write(home / "rankers" / "CURRENT", "r1\n")
    _write(home / "encoders" / P / "CURRENT", CUR)
    _write(home / "secrets" / "session.key", "s" * 32, 0o600)
    (home / "secrets").chmod(0o700)
    _write(home / "reports" / "import-items.json", "{}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from recsys.store import Store

    home = tmp_path / "home"
    monkeypatch.setenv("RECSYS_HOME", str(home))
    get_settings.cache_clear()
    Store.open(Settings(home=home)).dispose()  # the SQLite store, migrated
    _artifacts(home)
    yield home
    get_settings.cache_clear()


def _cli() -> typer.Typer:
    from recsys.cli.backup import register

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as under `recsys`
    register(app)
    return app


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f"{dest.name}.tmp-"))


def test_a_backup_holds_the_served_artifacts_secrets_and_a_manifest(home: Path, tmp_path: Path) -> None:
    dest = tmp_path / "bk"
    res = CliRunner().invoke(_cli(), ["backup", str(dest), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert _files(dest) == {"BACKUP.json", "recsys.db", "index/CURRENT", "index/generations/g1/manifest.json",
                            "index/generations/g1/seg0/ids.npy", "rankers/CURRENT", "rankers/r1/manifest.json",
                            f"encoders/{P}/CURRENT", f"encoders/{P}/{CUR}/manifest.json",
                            f"encoders/{P}/{CUR}/heads.pt", f"vectors/{P}@{CUR}/vectors.npz", "secrets/session.key"}
    assert (dest / "secrets").stat().st_mode & 0o777 == 0o700
    assert (dest / "secrets" / "session.key").stat().st_mode & 0o777 == 0o600
    manifest = json.loads((dest / MANIFEST_FILE).read_text())
    db = manifest["database"]
    assert db["kind"] == "sqlite" and db["sha256"] == backup_module._sha256(dest / "recsys.db")
    assert manifest["schema_revision"] and manifest["created_at"] and "recsys_version" in manifest
    assert {p["name"] for p in out["parts"]} == {"database", "index", "rankers", "encoders", "vectors", "secrets"}
    assert out["not_copied"] == ["reports/"] and any("holds secrets" in n for n in out["notes"])
    assert any("images are not copied" in n for n in out["notes"])
    assert _leftovers(dest) == []


def test_text_output_has_a_line_per_part_and_a_summary(home: Path, tmp_path: Path) -> None:
    dest = tmp_path / "empty-dir"
    dest.mkdir()  # an empty directory is taken
    res = CliRunner().invoke(_cli(), ["backup", str(dest), "--with-caches"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert all(x.startswith("copied  ") and x.endswith("MB") for x in lines[:-1]) and len(lines) == 7
    assert lines[-1].startswith(f"backup written to {dest}") and f"RECSYS_HOME={dest} recsys serve" in lines[-1]


def test_an_empty_dest_is_written_inside_on_its_own_disk(home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty DEST (a mount point of another disk) is filled from a temporary directory inside it, never beside
    it on the parent's disk (a rename onto a mount point fails, after copying everything to the wrong disk), and
    one cut short leaves it empty."""
    real, written = backup_module._copy_file, []

    def recording(src: Path, dst: Path) -> int:
        written.append(dst)
        return real(src, dst)

    monkeypatch.setattr(backup_module, "_copy_file", recording)
    dest = tmp_path / "mounted"
    dest.mkdir()
    backup(Settings(home=home), dest)
    assert written and all(dest in p.parents for p in written)
    assert (dest / "BACKUP.json").is_file() and not list(dest.glob(".tmp-*")) and _leftovers(dest) == []
    empty = tmp_path / "mounted2"
    empty.mkdir()
    monkeypatch.setattr(backup_module, "_write_manifest", lambda *a: (_ for _ in ()).throw(OSError(28, "full")))
    with pytest.raises(RecsysError, match="nothing was kept"):
        backup(Settings(home=home), empty)
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_dest_not_empty_is_refused_and_nothing_written(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "taken"
    _write(dest / "keep.txt", "mine")
    code, err = run_main(monkeypatch, capsys, "backup", str(dest))
    assert code != 0 and "not an empty directory" in err and len(err.strip().splitlines()) == 1
    assert _files(dest) == {"keep.txt"} and _leftovers(dest) == []
    code, err = run_main(monkeypatch, capsys, "backup", str(home / "inside"))
    assert code != 0 and "inside the data directory" in err and not (home / "inside").exists()


def test_a_running_job_refuses_it(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from filelock import FileLock

    dest = tmp_path / "bk"
    lock = FileLock(str(home / "jobs.lock"))
    lock.acquire()  # as `recsys build`, `train` or `encoder fit` holds it
    try:
        code, err = run_main(monkeypatch, capsys, "backup", str(dest), "--wait", "0.2")
    finally:
        lock.release()
    assert code != 0 and "a job" in err and "is running" in err and "--wait" in err
    assert len(err.strip().splitlines()) == 1
    assert not dest.exists() and _leftovers(dest) == []


def test_a_backup_cut_short_leaves_no_dest_and_no_tmp(home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = backup_module._copy_file
    calls = []

    def failing(src: Path, dst: Path) -> int:
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(backup_module, "_copy_file", failing)
    dest = tmp_path / "bk"
    with pytest.raises(RecsysError, match="No space left on device.*nothing was kept"):
        backup(Settings(home=home), dest)
    assert len(calls) == 3 and not dest.exists() and _leftovers(dest) == []
    monkeypatch.setattr(backup_module, "_write_manifest", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # interrupted at the very end: still nothing that looks complete
        backup(Settings(home=home), dest)
    assert not dest.exists() and _leftovers(dest) == []


def test_a_postgresql_home_copies_no_database_and_says_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "pg-home"
    _artifacts(home)
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_DATABASE_URL", "postgresql+psycopg://shop:hunter2secret@db.example:5433/shopdb")
    dest = tmp_path / "bk"
    code, err = run_main(monkeypatch, capsys, "backup", str(dest))  # run_main keeps stderr alone
    assert code == 0, err
    assert "pg_dump" in err and "--host=db.example" in err and "--port=5433" in err and "--dbname=shopdb" in err
    assert "--username=shop" in err and "close to this backup" in err
    report = json.loads((dest / MANIFEST_FILE).read_text())
    assert report["database"]["kind"] == "postgresql" and report["database"]["copied"] is False
    assert not (dest / "recsys.db").exists() and (dest / "index" / "CURRENT").is_file()
    for text in (err, (dest / MANIFEST_FILE).read_text()):
        assert "hunter2secret" not in text


def test_the_rankers_save_lock_name_is_the_rankers(home: Path) -> None:
    from recsys.ranking.artifact import SAVE_LOCK

    assert backup_module.SAVE_LOCK == SAVE_LOCK


# -- end to end ------------------------------------------------------------------------------------------------------


class _Writer(threading.Thread):
    """Events for ``users`` (none of the compared ones), committed one at a time until stopped."""

    def __init__(self, settings: Settings, users: list[str], items: list[str]) -> None:
        super().__init__(daemon=True)
        self.settings, self.users, self.items = settings, users, items
        self.committed: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from recsys.store import Store
        from recsys.store.events import ingest_events

        store = Store.open(self.settings)
        try:
            n = 0
            while not self.stop.is_set():
                eid = f"backup-test-{n:05d}"
                ev = {"event_id": eid, "user_id": self.users[n % len(self.users)],
                      "item_id": self.items[n % len(self.items)], "type": "view"}
                assert ingest_events(store, [ev])[0].status == "stored"
                self.committed.append(eid)  # committed when ingest_events returns
                n += 1
        except BaseException as e:  # said by the test
            self.error = e
        finally:
            store.dispose()

    def wait_for(self, count: int) -> None:
        for _ in range(60_000):  # no time bound on the test: a guard against a writer that died
            if len(self.committed) >= count or self.error is not None or not self.is_alive():
                break
            time.sleep(0.005)
        assert self.error is None and len(self.committed) >= count, self.error


def _recommend(home: Path, user: str) -> Any:
    from recsys.cli import _register_commands, app

    if not any(c.name == "recommend" for c in app.registered_commands):
        _register_commands()
    res = CliRunner().invoke(app, ["recommend", user, "--k", "10", "--json"],
                             env={"RECSYS_HOME": str(home), "RECSYS_RANKING__CLOCK": "2026-03-01T00:00:00"})
    get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    return [(r["item_id"], r["score"]) for r in json.loads(res.stdout.strip().splitlines()[-1])]


@pytest.mark.slow  # the session's e2e demo build (shared with the notebook and browser tests)
def test_a_backup_taken_while_events_arrive_serves_the_same_lists(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from recsys.api import create_app
    from recsys.api.auth import create_key
    from recsys.store import Store
    from tests.e2e_fixture import built_demo, private_home

    built_home, _ = built_demo(tmp_path_factory)
    home = private_home(built_home, tmp_path / "home")
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    settings = Settings(home=home)
    con = sqlite3.connect(home / "recsys.db")
    users = [r[0] for r in con.execute("SELECT external_id FROM users ORDER BY external_id LIMIT 8")]
    items = [r[0] for r in con.execute("SELECT external_id FROM items WHERE NOT deleted AND NOT hidden LIMIT 5")]
    con.close()
    compared, writing = users[:3], users[3:]
    store = Store.open(settings)
    try:
        key, _ = create_key(store, "backup-test", "read")
    finally:
        store.dispose()
    writer = _Writer(settings, writing, items)
    real_copy = backup_module._sqlite_copy

    def copy_beside_writes(src: Path, dst: Path) -> None:  # events keep arriving while the backup holds its locks
        writer.wait_for(len(writer.committed) + 5)
        real_copy(src, dst)
        writer.wait_for(len(writer.committed) + 5)

    monkeypatch.setattr(backup_module, "_sqlite_copy", copy_beside_writes)
    writer.start()
    dest = tmp_path / "bk"
    try:
        writer.wait_for(5)
        before = list(writer.committed)  # committed before the backup started
        backup(settings, dest)
        original = {u: _recommend(home, u) for u in compared}  # the compared users got no event meanwhile
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None and len(writer.committed) > len(before) + 5
    assert not (dest / "recsys.db-wal").exists()
    con = sqlite3.connect(dest / "recsys.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {r[0] for r in con.execute("SELECT client_event_id FROM events WHERE client_event_id LIKE "
                                            "'backup-test-%'")}
    finally:
        con.close()
    assert set(before) <= stored
    verify = CliRunner().invoke(_root(), ["index", "verify"], env={"RECSYS_HOME": str(dest)})
    get_settings.cache_clear()
    assert verify.exit_code == 0 and "intact" in verify.output, verify.output
    for u in compared:
        assert _recommend(dest, u) == original[u] and original[u]
    with TestClient(create_app(Settings(home=dest))) as client:
        ok = client.get(f"/v1/users/{compared[0]}/recommendations", headers={"X-API-Key": key})
        assert ok.status_code == 200, ok.text
        assert client.get(f"/v1/users/{compared[0]}/recommendations",
                          headers={"X-API-Key": key + "x"}).status_code == 401


def _root() -> typer.Typer:
    from recsys.cli import _register_commands, app

    if not any(c.name == "recommend" for c in app.registered_commands):
        _register_commands()
    return app


def test_backup_is_a_registered_command() -> None:
    from recsys.cli import _COMMANDS

    assert "backup" in _COMMANDS and os.path.isfile(Path(backup_module.__file__).parent / "cli" / "backup.py")
