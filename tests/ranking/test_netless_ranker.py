"""A ranker fitted on no training example has no network and ranks in candidate order: it says why, the manifest
and reports mark it, and it never replaces a served ranker that has a network (defect 1 of the trainer review)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from recsys.config import Settings, get_settings
from recsys.ranking import RankingPipeline, rankers_root, save_generation, train_ranker
from recsys.ranking.artifact import MANIFEST, current_version
from recsys.ranking.generations import NetlessRefused, list_generations
from tests.ranking.fixtures import World, small_params
from tests.ranking.small import pipe as pipe  # module fixtures
from tests.ranking.small import world as world


def _same_time(events: pd.DataFrame) -> pd.DataFrame:
    return events.assign(ts=events["ts"].min())


def _only_dislikes(events: pd.DataFrame) -> pd.DataFrame:
    return events.assign(type="dislike")


def _one_each(events: pd.DataFrame) -> pd.DataFrame:
    return events.drop_duplicates("user_id").reset_index(drop=True)


@pytest.mark.parametrize(("make", "params", "reason"), [
    (_same_time, {}, "no user has positive events at two distinct times (24 of 24 have all theirs at one time;"),
    (_one_each, {}, "no user has positive events at two distinct times (24 of 24 have one event;"),
    (_only_dislikes, {}, "all 24 users have only dislikes, and dislikes do not count"),
    (lambda e: e, {"max_anchors": 0}, "max_anchors or anchors_per_user is 0"),
])
def test_a_fit_without_examples_says_why_and_marks_the_manifest(
        world: World, make: object, params: dict[str, int], reason: str, caplog: pytest.LogCaptureFixture) -> None:
    events = make(world.events)  # type: ignore[operator]
    with caplog.at_level("WARNING"):
        fitted = RankingPipeline.fit(events, world.items, world.vectors, params=small_params(epochs=1, **params))
    assert fitted.net is None
    assert fitted.manifest["fallback"] == "candidate order" and reason in fitted.manifest["no_network_reason"]
    assert "recsys train" in fitted.manifest["no_network_reason"]  # and what to do
    assert reason in caplog.text and "too few events" not in caplog.text


def test_a_trained_ranker_has_no_fallback_fields(pipe: RankingPipeline) -> None:
    assert pipe.net is not None
    assert "fallback" not in pipe.manifest and "no_network_reason" not in pipe.manifest


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_RANKING__PARAMS", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _save(pipe: RankingPipeline, root: Path, version: str, encoder_id: str = "test-encoder") -> str:
    p = copy.copy(pipe)
    p.manifest = dict(pipe.manifest, version=version, encoder_id=encoder_id)
    return save_generation(p, root).name


def test_a_netless_training_never_replaces_a_served_ranker_with_a_network(
        settings: Settings, pipe: RankingPipeline, world: World) -> None:
    root = rankers_root(settings)
    good = _save(pipe, root, "good")
    with pytest.raises(NetlessRefused) as e:
        train_ranker(_same_time(world.events), world.items, world.vectors, settings)
    msg = e.value.message
    assert "not saved" in msg and "no user has positive events at two distinct times" in msg
    assert f"current ranker {good}, trained with a network, stays served" in msg
    assert current_version(root) == good and [g.version for g in list_generations(root)] == [good]


def test_a_first_netless_ranker_is_saved_as_the_fallback_and_marked(
        settings: Settings, world: World, caplog: pytest.LogCaptureFixture) -> None:
    root = rankers_root(settings)
    with caplog.at_level("WARNING"):
        first, path = train_ranker(_same_time(world.events), world.items, world.vectors, settings)
    assert first.net is None and current_version(root) == path.name
    m = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    assert m["has_net"] is False and "two distinct times" in m["no_network_reason"]
    assert "it is saved and served, ranking in candidate order" in caplog.text and "two distinct times" in caplog.text
    g = list_generations(root)[-1]
    assert g.has_net is False
    # a net-less current one is no reason to refuse another
    _, again = train_ranker(_one_each(world.events), world.items, world.vectors, settings)
    assert current_version(root) == again.name


def test_a_netless_ranker_replaces_one_that_cannot_serve_these_vectors(
        settings: Settings, pipe: RankingPipeline, world: World) -> None:
    """A current ranker trained on another encoder serves nothing over these vectors: the fallback is better."""
    root = rankers_root(settings)
    _save(pipe, root, "alien", encoder_id="another-encoder")
    _, path = train_ranker(_same_time(world.events), world.items, world.vectors, settings)
    assert current_version(root) == path.name
