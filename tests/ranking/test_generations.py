"""Ranker generations listed and rolled back like index generations; an incompatible one is refused untouched."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli.ranker import app
from recsys.config import get_settings
from recsys.errors import IncompatibleArtifact, NotFound, RankerError
from recsys.index import build_generation, index_root
from recsys.ranking import RankingPipeline, current_generation, load_current_ranker, rankers_root, save_generation
from recsys.ranking.artifact import current_version
from recsys.ranking.generations import list_generations, rollback
from tests.ranking.fixtures import World
from tests.ranking.small import pipe as pipe  # module fixtures
from tests.ranking.small import world as world


def _save(pipe: RankingPipeline, root: Path, version: str, encoder_id: str = "test-encoder") -> str:
    p = copy.copy(pipe)
    p.manifest = dict(pipe.manifest, version=version, encoder_id=encoder_id)
    return save_generation(p, root).name


def test_list_oldest_first_and_rollback_to_previous(pipe: RankingPipeline, tmp_path: Path) -> None:
    root = tmp_path / "rankers"
    assert list_generations(root) == []
    with pytest.raises(RankerError, match="no ranker generation"):
        rollback(root)
    a, b = _save(pipe, root, "v1"), _save(pipe, root, "v1")  # the same second: saved as v1 and v1-2
    assert (a, b) == ("v1", "v1-2")
    c = _save(pipe, root, "v0")  # an older-looking name saved last is still the newest
    assert [g.version for g in list_generations(root)] == [a, b, c]
    assert current_version(root) == c
    assert rollback(root, encoder_id="test-encoder") == b and current_generation(root) == root / b
    assert rollback(root) == a
    with pytest.raises(NotFound, match="older than 'v1'"):
        rollback(root)
    assert rollback(root, f"ranker-{c}") == c  # the id /readyz and recommendations show is accepted too
    with pytest.raises(NotFound, match="not found"):
        rollback(root, "nope")
    assert current_version(root) == c
    assert rollback(root, a) == a and current_generation(root) == root / a


def test_incompatible_generation_is_refused_and_nothing_changes(pipe: RankingPipeline, tmp_path: Path) -> None:
    root = tmp_path / "rankers"
    old = _save(pipe, root, "old", encoder_id="another-encoder")
    new = _save(pipe, root, "new")
    with pytest.raises(IncompatibleArtifact, match="another-encoder") as e:
        rollback(root, encoder_id="test-encoder", dim=pipe.dim)
    assert "refusing to roll back" in e.value.message and f"fit: {new}" in e.value.message
    assert current_version(root) == new
    gens = {g.version: g for g in list_generations(root)}
    assert gens[old].incompatibility("test-encoder") and gens[new].incompatibility("test-encoder") is None
    assert gens[new].incompatibility("test-encoder", pipe.dim + 1)  # another dimension
    assert rollback(root, old) == old  # with no index to check against, only format and features are checked


def _last_json(out: str) -> object:
    return json.loads(out.strip().splitlines()[-1])


def test_cli_list_and_rollback_against_the_served_index(home: Path, pipe: RankingPipeline, world: World) -> None:
    settings = get_settings()
    root = rankers_root(settings)
    runner = CliRunner()
    assert _last_json(runner.invoke(app, ["list", "--json"]).stdout) == []
    build_generation(index_root(settings), list(world.vectors.item_ids), {"fused": world.vectors.fused},
                     encoder_id="test-encoder")
    a = _save(pipe, root, "a")
    other = _save(pipe, root, "other", encoder_id="another-encoder")
    b = _save(pipe, root, "b")
    rows = _last_json(runner.invoke(app, ["list", "--json"]).stdout)
    assert isinstance(rows, list)
    assert [(r["version"], r["current"], r["compatible"]) for r in rows] == [
        (a, False, True), (other, False, False), (b, True, True)]
    assert rows[0]["ranker_id"] == f"ranker-{a}" and "another-encoder" in rows[1]["incompatible_reason"]
    res = runner.invoke(app, ["rollback", "--json"])  # the one before the current is the incompatible one
    assert res.exit_code != 0 and isinstance(res.exception, IncompatibleArtifact)
    assert "refusing to roll back" in res.exception.message and current_version(root) == b
    res = runner.invoke(app, ["rollback", a, "--json"])
    assert res.exit_code == 0 and _last_json(res.stdout) == {"current": a, "ranker_id": f"ranker-{a}"}
    loaded = load_current_ranker(settings, world.vectors, world.items)
    assert loaded is not None and loaded.ranker_id == f"ranker-{a}"
