"""`recsys train`, `build` and `evaluate` over a ranker without a network: the reports say so, and a served ranker
with a network is kept (with a non-zero exit) rather than replaced by the candidate order."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import recsys.encoders
import recsys.index
import recsys.index.catalog
import recsys.jobs
import recsys.store.queries
from recsys.config import Settings, get_settings
from recsys.jobs import Jobs
from recsys.ranking import ExactSearch, RankingPipeline, rankers_root, save_generation
from recsys.ranking.artifact import current_version
from recsys.ranking.generations import NetlessRefused, list_generations
from tests.ranking.fixtures import World, make_world, small_params


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(per_combo=2, users_per_combo=2, events_per_user=4)


class _Reader(ExactSearch):
    """The served index as the jobs use it: a search with a generation id and the encoder of its manifest."""

    def __init__(self, world: World) -> None:
        super().__init__(world.vectors.item_ids, world.vectors.fused)
        self.generation_id = "g1"
        self.manifest = type("M", (), {"encoder_id": world.vectors.encoder_id})()


class _Recommender:
    def __init__(self, settings: Settings, world: World) -> None:
        self.settings, self.store, self.index = settings, type("S", (), {"session": contextlib.nullcontext})(), \
            _Reader(world)
        self.generations = type("G", (), {"latest_index": lambda _, strict=False: self.index})()
        self.refreshed = 0

    def refresh(self) -> None:
        self.refreshed += 1

    def removed_items(self) -> frozenset[str]:
        return frozenset()

    def use_encoder(self, encoder: object) -> None:
        pass


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: World) -> Iterator[tuple[Jobs, dict[str, Any]]]:
    """Jobs over a fake store whose events the test sets in ``data["events"]``."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_RANKING__PARAMS", raising=False)
    get_settings.cache_clear()
    data: dict[str, Any] = {"events": world.events}
    monkeypatch.setattr(recsys.jobs, "events_frame", lambda s, **kw: data["events"])
    monkeypatch.setattr(recsys.jobs, "items_frame", lambda s: world.items)
    monkeypatch.setattr(recsys.jobs, "training_watermark", lambda s: "w1")
    monkeypatch.setattr(recsys.jobs, "frame_watermark", lambda events: "w1")
    monkeypatch.setattr(recsys.jobs, "vectors_of_index", lambda settings, reader: world.vectors)
    monkeypatch.setattr(recsys.store.queries, "evaluation_users", lambda s: set())
    yield Jobs(_Recommender(get_settings(), world)), data  # type: ignore[arg-type]
    get_settings.cache_clear()


def _same_time(events: pd.DataFrame) -> pd.DataFrame:
    return events.assign(ts=events["ts"].min())


def _save_good(world: World, root: Path) -> str:
    pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params(epochs=1))
    p = copy.copy(pipe)
    p.manifest = dict(pipe.manifest, version="good")
    return save_generation(p, root).name


def test_train_reports_a_netless_ranker_and_keeps_a_served_one_with_a_network(
        jobs: tuple[Jobs, dict[str, Any]], world: World) -> None:
    job, data = jobs
    data["events"] = _same_time(world.events)
    report = job.train()  # the first ranker of the store: saved as the fallback, and said to be one
    assert report["network"] is False and report["fallback"] == "candidate order"
    assert "no user has positive events at two distinct times" in report["no_network_reason"]
    root = rankers_root(job.settings)
    good = _save_good(world, root)
    with pytest.raises(NetlessRefused, match=f"current ranker {good}, trained with a network, stays served"):
        job.train()
    assert current_version(root) == good and len(list_generations(root)) == 2


def test_build_serves_its_index_with_the_kept_ranker_then_fails(
        jobs: tuple[Jobs, dict[str, Any]], world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    job, data = jobs
    root = rankers_root(job.settings)
    good = _save_good(world, root)  # trained with other knobs than the settings': the build retrains
    data["events"] = _same_time(world.events)
    published: list[str] = []
    monkeypatch.setattr(job, "_encoder_fitted", lambda: True)
    monkeypatch.setattr(recsys.encoders, "embed_catalog", lambda *a, **k: {})
    monkeypatch.setattr(recsys.index, "build_from_catalog", lambda *a, **k: {"generation": "g1"})
    monkeypatch.setattr(recsys.index, "current_id", lambda root: "g1")
    monkeypatch.setattr(recsys.index, "publish", lambda root, gid, *a: published.append(gid))
    monkeypatch.setattr(recsys.index.catalog, "rebase_for", lambda *a: None)
    with pytest.raises(NetlessRefused, match="has no network"):
        job.build()
    assert published == ["g1"] and current_version(root) == good


def test_evaluate_says_whether_ours_has_a_network(jobs: tuple[Jobs, dict[str, Any]], world: World) -> None:
    job, data = jobs
    # two purchases per user on two days: the split's training part keeps one event per user, so no example
    two = world.events.groupby("user_id").head(2).copy()
    two["ts"] = two["ts"].min() + pd.to_timedelta(two.groupby("user_id").cumcount(), unit="D")
    data["events"] = two
    res = job.evaluate(5, part=None)
    assert res["ours"]["network"] is False and res["ours"]["fallback"] == "candidate order"
    assert "two distinct times" in res["ours"]["no_network_reason"]
    assert {"metrics", "baselines", "users", "slices"} <= set(res) and res["metrics"]["recall"] is not None
    data["events"] = world.events
    assert job.evaluate(5, part=None)["ours"] == {"network": True}
