"""``recsys ranker rollback`` under a running service: its refresh serves the rolled-back ranker, and a ranker trained
on another encoder is refused without the service ever meeting it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli.ranker import app
from recsys.config import get_settings
from recsys.errors import IncompatibleArtifact, RankerError
from recsys.ranking import rankers_root
from recsys.ranking.artifact import MANIFEST, current_version, write_pointer
from recsys.service import Recommender
from recsys.store import Store
from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = pytest.mark.slow  # the session's e2e demo build (shared with the notebook and browser tests)


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    built, _ = built_demo(tmp_path_factory)
    home = private_home(built, tmp_path / "home")
    monkeypatch.setenv("RECSYS_HOME", str(home))  # for the CLI
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def _copy_generation(root: Path, src: str, dst: str, year: int, **manifest: object) -> None:
    """A second generation: the served one's files under another version (and, optionally, manifest changes)."""
    shutil.copytree(root / src, root / dst)
    m = json.loads((root / dst / MANIFEST).read_text(encoding="utf-8"))
    m.update(version=dst, created_at=f"{year}-01-01T00:00:00+00:00", **manifest)
    (root / dst / MANIFEST).write_text(json.dumps(m), encoding="utf-8")


def test_rollback_is_picked_up_by_a_running_service(home: Path) -> None:
    settings = e2e_settings(home)
    store = Store.open(settings)
    runner = CliRunner()
    try:
        rec = Recommender(settings, store)
        root = rankers_root(settings)
        first = current_version(root)
        assert first is not None and rec.status()["ranker_version"] == f"ranker-{first}"
        _copy_generation(root, first, "later", 9998)
        write_pointer(root, "later")  # as `recsys train` in another process would publish it
        assert rec.refresh() is True and rec.status()["ranker_version"] == "ranker-later"

        res = runner.invoke(app, ["rollback", "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout.strip().splitlines()[-1])["current"] == first
        assert rec.refresh() is True and rec.status()["ranker_version"] == f"ranker-{first}"
        assert rec.trending(3)

        _copy_generation(root, first, "alien", 9999, encoder_id="some-other-encoder")
        res = runner.invoke(app, ["rollback", "alien"])
        assert isinstance(res.exception, IncompatibleArtifact) and "some-other-encoder" in res.exception.message
        assert current_version(root) == first
        assert rec.refresh() is False and rec.status()["ranker_version"] == f"ranker-{first}"
        rows = json.loads(runner.invoke(app, ["list", "--json"]).stdout.strip().splitlines()[-1])
        assert [(r["version"], r["current"], r["compatible"]) for r in rows][-2:] == [
            ("later", False, True), ("alien", False, False)]
    finally:
        store.dispose()


def test_a_damaged_ranker_is_listed_as_such_and_a_lost_current_names_the_fix(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = e2e_settings(home)
    root = rankers_root(settings)
    runner = CliRunner()
    first = current_version(root)
    assert first is not None
    _copy_generation(root, first, "broken", 9998)
    (root / "broken" / "stats.npz").write_bytes(b"truncated")
    res = runner.invoke(app, ["rollback", "broken"])
    assert isinstance(res.exception, IncompatibleArtifact) and "damaged" in res.exception.message
    assert current_version(root) == first  # nothing changed
    listed = runner.invoke(app, ["list"])
    assert "damaged (ranker broken: stats.npz is missing or damaged (checksum)" in listed.output
    assert "`recsys train` replaces it" in listed.output
    rows = json.loads(runner.invoke(app, ["list", "--json"]).stdout.strip().splitlines()[-1])
    assert {r["version"]: r["damaged"] is None for r in rows} == {first: True, "broken": False}

    (root / "CURRENT").unlink()  # removed by hand: no ranker is served, and each tool says so
    listed = runner.invoke(app, ["list"])
    assert f"none is served (CURRENT is missing): `recsys ranker rollback {first}`" in listed.output  # intact
    res = runner.invoke(app, ["rollback"])
    assert "CURRENT file is missing" in str(res.exception)
    assert f"recsys ranker rollback {first}" in str(res.exception)
    store = Store.open(settings)
    try:
        with caplog.at_level("WARNING"):
            rec = Recommender(settings, store)
            status = rec.status()
        assert status["ranker_version"] is None and "its CURRENT file is missing" in status["ranker_error"]
        assert "its CURRENT file is missing, but 2 generation(s) are" in caplog.text
        with pytest.raises(RankerError, match=f"recsys ranker rollback {first}"):  # not "no ranker trained yet"
            rec.recommend("user-0001", 3)
    finally:
        store.dispose()
    assert runner.invoke(app, ["rollback", first]).exit_code == 0 and current_version(root) == first
