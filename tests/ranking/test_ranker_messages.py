"""What `recsys ranker list`, `ranker rollback` and `index build` say about generations the served index cannot
use, a lost ``CURRENT`` and rankers without a network (defects 2 and 3 of the trainer review)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import recsys.cli.index as cli_index
import recsys.index
from recsys.cli.index import app as index_app
from recsys.cli.ranker import app
from recsys.config import Settings, get_settings
from recsys.errors import IncompatibleArtifact, RankerError
from recsys.index import build_generation, index_root
from recsys.ranking import RankingPipeline, rankers_root, save_generation
from recsys.ranking.artifact import current_version, write_pointer
from recsys.ranking.generations import newest_usable, rollback, warn_unserved
from tests.ranking.fixtures import World, small_params
from tests.ranking.small import pipe as pipe  # module fixtures
from tests.ranking.small import world as world


@pytest.fixture(scope="module")
def netless(world: World) -> RankingPipeline:
    return RankingPipeline.fit(world.events.assign(ts=world.events["ts"].min()), world.items, world.vectors,
                               params=small_params(epochs=1))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: World) -> Iterator[Settings]:
    """A home whose served index holds the world's vectors of encoder ``test-encoder``."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    s = get_settings()
    build_generation(index_root(s), list(world.vectors.item_ids), {"fused": world.vectors.fused},
                     encoder_id="test-encoder")
    yield s
    get_settings.cache_clear()


def _save(pipe: RankingPipeline, root: Path, version: str, year: int, encoder_id: str = "test-encoder") -> str:
    p = copy.copy(pipe)
    p.manifest = dict(pipe.manifest, version=version, encoder_id=encoder_id)
    name = save_generation(p, root).name
    m = json.loads((root / name / "manifest.json").read_text(encoding="utf-8"))
    m["created_at"] = f"{year}-01-01T00:00:00+00:00"  # listed in this order whatever the clock
    (root / name / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    return name


def _rows(runner: CliRunner) -> list[dict[str, object]]:
    return json.loads(runner.invoke(app, ["list", "--json"]).stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_list_marks_a_current_generation_the_index_cannot_use_and_one_without_network(
        settings: Settings, pipe: RankingPipeline, netless: RankingPipeline) -> None:
    root = rankers_root(settings)
    runner = CliRunner()
    _save(netless, root, "fallback", 2001)
    _save(pipe, root, "alien", 2002, encoder_id="another-encoder")  # current: the served index cannot use it
    out = runner.invoke(app, ["list"]).output
    alien = next(line for line in out.splitlines() if " alien " in line)
    assert alien.startswith("*! alien") and "the served index cannot use it" in alien and "another-encoder" in alien
    assert "recsys train" in alien
    fallback = next(line for line in out.splitlines() if " fallback " in line)
    assert fallback.startswith("   fallback")
    assert "no network: ranks in candidate order (no user has positive" in fallback
    rows = {r["version"]: r for r in _rows(runner)}
    assert rows["fallback"]["network"] is False and rows["alien"]["network"] is True
    assert "two distinct times" in str(rows["fallback"]["no_network_reason"])


def test_a_lost_current_suggests_the_newest_usable_generation(
        settings: Settings, pipe: RankingPipeline, netless: RankingPipeline, caplog: pytest.LogCaptureFixture) -> None:
    root = rankers_root(settings)
    runner = CliRunner()
    good = _save(pipe, root, "good", 2001)
    _save(netless, root, "fallback", 2002)  # intact and fits, but ranks in candidate order
    _save(pipe, root, "alien", 2003, encoder_id="another-encoder")
    _save(pipe, root, "broken", 2004)
    (root / "broken" / "stats.npz").write_bytes(b"truncated")
    (root / "CURRENT").unlink()
    assert newest_usable(root) == good
    listed = runner.invoke(app, ["list"]).output
    assert f"none is served (CURRENT is missing): `recsys ranker rollback {good}` serves the newest intact" in listed
    with pytest.raises(RankerError, match=f"recsys ranker rollback {good}"):
        rollback(root, encoder_id="test-encoder", dim=pipe.dim)
    with caplog.at_level("WARNING"):
        why = warn_unserved(root)  # as a server's refresh calls it: the served index is read beside the rankers
    assert why is not None and f"recsys ranker rollback {good}" in why and "broken" not in why
    with pytest.raises(IncompatibleArtifact, match="the current ranker stays none$"):
        rollback(root, "broken")

    (root / good / "net.pt").write_bytes(b"damaged")  # then the net-less one is the only usable one
    assert newest_usable(root, "test-encoder", pipe.dim) == "fallback"
    (root / "fallback" / "stats.npz").write_bytes(b"damaged")
    assert newest_usable(root) is None
    assert "none is intact and fits the served index: run `recsys train`" in runner.invoke(app, ["list"]).output
    assert "run `recsys train`" in str(warn_unserved(root))


def test_index_build_warns_when_the_current_ranker_cannot_rank_its_generation(
        settings: Settings, pipe: RankingPipeline, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    root = rankers_root(settings)
    runner = CliRunner()
    _save(pipe, root, "old", 2001)
    gid = build_generation(index_root(settings), list(world.vectors.item_ids), {"fused": world.vectors.fused},
                           encoder_id="new-encoder").generation_id
    monkeypatch.setattr(cli_index, "open_store", lambda: None)
    monkeypatch.setattr(recsys.index, "build_from_catalog",
                        lambda *a, **k: {"action": "full", "generation": gid, "items": len(world.vectors.item_ids)})
    out = runner.invoke(index_app, ["build"]).output
    assert f"the current ranker cannot rank generation {gid}" in out and "new-encoder" in out
    assert "run `recsys train`" in out
    write_pointer(root, _save(pipe, root, "fits", 2002, encoder_id="new-encoder"))
    assert "cannot rank" not in runner.invoke(index_app, ["build"]).output
    assert current_version(root) == "fits"


def test_list_calls_an_intact_older_format_generation_old_not_damaged(
        settings: Settings, pipe: RankingPipeline) -> None:
    root = rankers_root(settings)
    name = _save(pipe, root, "old", 2001)
    m = json.loads((root / name / "manifest.json").read_text(encoding="utf-8"))
    m["format"] = 1  # what a recsys before the format change saved, intact
    (root / name / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    line = next(x for x in CliRunner().invoke(app, ["list"]).output.splitlines() if " old " in x)
    assert line.startswith("*! old") and "damaged" not in line, line
    assert "made by another version of recsys" in line and "saved in format 1" in line and "recsys train" in line
