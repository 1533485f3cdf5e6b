"""A generation a `recsys build` wrote and never published (it was killed before its switch): its ``PENDING`` is
dropped once no build runs, `recsys index list` says what it is, and a rollback to it is refused while the current
ranker cannot rank it (recommendations would be off), unless --force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner

from recsys.config import Settings, get_settings
from recsys.errors import IncompatibleArtifact
from recsys.index import build_from_catalog, build_generation, current_id, index_root, layout, list_generations
from recsys.index.pairing import JOBS_LOCK, drop_stale_pending, jobs_running, pending_id
from recsys.store import Store
from tests.index.fixtures import clustered, ids
from tests.index.test_catalog import FakeEncoder, _add_items


def test_a_standalone_index_build_drops_a_stale_pending_never_a_running_builds(tmp_path: Path,
                                                                               sqlite_store: Store) -> None:
    settings = Settings(home=tmp_path / "home")
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    root = index_root(settings)
    served = build_from_catalog(sqlite_store, settings, vectors=enc)["generation"]
    # what a `recsys build` killed before its publish leaves: a written generation held by PENDING
    left = build_from_catalog(sqlite_store, settings, vectors=enc, mode="full", switch=False)["generation"]
    assert pending_id(root) == left
    with FileLock(str(settings.home / JOBS_LOCK)):  # a build is running: its PENDING is kept for its publish
        assert build_from_catalog(sqlite_store, settings, vectors=enc)["action"] == "skipped"
        assert pending_id(root) == left
    assert build_from_catalog(sqlite_store, settings, vectors=enc)["action"] == "skipped"
    assert pending_id(root) is None and current_id(root) == served
    newer = build_from_catalog(sqlite_store, settings, vectors=enc, mode="full")["generation"]
    layout.prune(root, 1)  # no longer held: pruned like any other
    assert [m.generation_id for m in list_generations(root)] == [newer]


def test_the_jobs_lock_a_build_holds_is_the_one_pending_is_judged_by(tmp_path: Path) -> None:
    from recsys.jobs import jobs_lock

    settings = Settings(home=tmp_path / "home")
    root = index_root(settings)
    assert jobs_running(settings.home) is False  # never created by asking
    assert not (settings.home / JOBS_LOCK).exists()
    root.mkdir(parents=True)
    layout.hold(root, "g1")
    with jobs_lock(settings):
        assert jobs_running(settings.home) is True
        assert drop_stale_pending(root, settings.home) is None and pending_id(root) == "g1"
    assert jobs_running(settings.home) is False
    assert drop_stale_pending(root, settings.home) == "g1" and pending_id(root) is None


def _fake_ranker(settings: Settings, encoder_id: str, dim: int) -> None:
    """A current ranker generation trained on ``encoder_id``'s ``dim``-d vectors (its manifest is all that is read)."""
    from recsys.ranking import rankers_root
    from recsys.ranking.artifact import FORMAT, MANIFEST
    from recsys.ranking.features import FEATURES

    d = rankers_root(settings) / "v1"
    d.mkdir(parents=True)
    (d / MANIFEST).write_text(json.dumps({"encoder_id": encoder_id, "dim": dim, "format": FORMAT,
                                          "features": list(FEATURES)}))
    (rankers_root(settings) / "CURRENT").write_text("v1")


@pytest.fixture
def orphan(home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    """(index root, served generation of encoder e1 that the current ranker ranks, an unpublished one of e2)."""
    import recsys.encoders.encoder as encoder

    monkeypatch.setattr(encoder, "query_encoder_of", lambda settings, e: (e, None))  # every generation queryable
    settings = get_settings()
    root = index_root(settings)
    served = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e1").generation_id
    left = build_generation(root, ids(40), {"fused": clustered(40, seed=1)}, encoder_id="e2",
                            make_current=False).generation_id
    _fake_ranker(settings, "e1", 16)
    return root, served, left


def test_list_marks_a_generation_an_interrupted_build_left_unpublished(orphan: tuple[Path, str, str]) -> None:
    from recsys.cli.index import BUILDING, UNPUBLISHED, app

    root, served, left = orphan
    runner = CliRunner()
    rows = {r["generation_id"]: r for r in json.loads(runner.invoke(app, ["list", "--json"]).stdout.splitlines()[-1])}
    assert rows[left]["unpublished"] == UNPUBLISHED and rows[served]["unpublished"] is None
    assert "e2" in rows[left]["ranker_misfit"] and rows[served]["ranker_misfit"] is None
    line = next(x for x in runner.invoke(app, ["list"]).stdout.splitlines() if left in x)
    assert "unpublished: left by an interrupted build" in line and "the current ranker cannot rank it" in line
    with FileLock(str(get_settings().home / JOBS_LOCK)):  # while the build that wrote it runs, it is pending
        line = next(x for x in runner.invoke(app, ["list"]).stdout.splitlines() if left in x)
        assert BUILDING in line and UNPUBLISHED not in line
    assert pending_id(root) == left  # listing changes nothing


def test_rollback_refuses_a_generation_the_current_ranker_cannot_rank_unless_forced(
        orphan: tuple[Path, str, str]) -> None:
    from recsys.cli.index import app

    root, served, left = orphan
    runner = CliRunner()
    res = runner.invoke(app, ["rollback", "--to", left])
    assert res.exit_code != 0 and current_id(root) == served
    said = str(res.exception) if res.exception and not isinstance(res.exception, SystemExit) else res.stderr
    assert "the current ranker cannot rank index generation" in said and "--force" in said
    assert runner.invoke(app, ["rollback", "--to", left, "--force"]).exit_code == 0 and current_id(root) == left
    # recommendations are off already (the ranker cannot rank the served one): going back is no worse
    assert runner.invoke(app, ["rollback", "--to", served]).exit_code == 0 and current_id(root) == served


def test_rollback_checks_the_ranker_only_where_it_makes_things_worse(orphan: tuple[Path, str, str]) -> None:
    root, served, left = orphan

    def fit(gid: str) -> str | None:
        return "other encoder" if gid == left else None

    def queries(encoder_id: str) -> tuple[str, int | None]:
        return encoder_id, None

    with pytest.raises(IncompatibleArtifact, match=f"cannot rank index generation {left}"):
        layout.rollback(root, left, query_encoder=queries, ranker_fit=fit)
    assert layout.rollback(root, left, query_encoder=queries) == left  # no ranker check asked for: as before
    assert layout.rollback(root, served, query_encoder=queries, ranker_fit=fit) == served
