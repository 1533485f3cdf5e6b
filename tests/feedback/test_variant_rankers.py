"""A variant that ranks with another stored ranker generation (the session's built e2e demo, a second ranker trained
with another seed): its users get that generation's lists (the same as serving it), the others the served one's;
meta, explanations and the recorded list name the ranker that ranked; the cache keeps them apart; a generation that
is not stored, or was trained on other vectors, is refused at start-up naming the experiment and the variant."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from recsys.api import create_app
from recsys.config import ExperimentsSettings, Settings
from recsys.errors import ConfigError
from recsys.experiments import parse_experiments
from recsys.ranking import rankers_root
from recsys.ranking.artifact import MANIFEST, current_version, write_pointer
from recsys.service import Recommender
from recsys.serving.generations import UnknownRanker
from recsys.serving.rules import ListRules
from recsys.store.tables import ServedList, User
from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = pytest.mark.slow  # the session's e2e demo build, and one more ranker trained on it


@pytest.fixture(scope="module")
def two_rankers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """(home, the older generation, the newer, served one): the demo's ranker and one trained with another seed."""
    built, _ = built_demo(tmp_path_factory)
    home = private_home(built, tmp_path_factory.mktemp("variant-rankers") / "home")
    settings = e2e_settings(home)
    root = rankers_root(settings)
    older = current_version(root)
    assert older is not None
    settings.ranking = settings.ranking.model_copy(update={"seed": 7})
    rec = Recommender(settings)
    try:
        rec.jobs.train()
    finally:
        rec.store.dispose()
    newer = current_version(root)
    assert newer is not None and newer != older
    return home, older, newer


@pytest.fixture
def settings(two_rankers: tuple[Path, str, str]) -> Iterator[Settings]:
    home, _, newer = two_rankers
    write_pointer(rankers_root(e2e_settings(home)), newer)  # a test below serves the older one for a while
    yield e2e_settings(home)


def _experiment(ranker: str) -> dict[str, Any]:
    return {"name": "gens", "variants": [{"name": "served", "share": 0.5},
                                         {"name": "older", "share": 0.5, "ranker": ranker}]}


def _users(rec: Recommender) -> list[str]:
    with rec.store.session() as s:
        return [str(u) for u in s.scalars(select(User.external_id).order_by(User.id))]


def _ids(items: Any) -> list[tuple[str, float]]:
    return [(it.item_id, it.score) if hasattr(it, "item_id") else (it["item_id"], it["score"]) for it in items]


def test_a_variant_is_ranked_by_the_generation_it_names(two_rankers: tuple[Path, str, str],
                                                        settings: Settings) -> None:
    _, older, newer = two_rankers
    settings.experiments = ExperimentsSettings(definitions=[_experiment(older)])
    rec = Recommender(settings)
    users = _users(rec)
    answers: dict[str, dict[str, Any]] = {}
    with TestClient(create_app(settings, rec)) as c:
        for user in users:
            r = c.get(f"/v1/users/{user}/recommendations?k=8&explain=true")
            assert r.status_code == 200, r.text
            answers[user] = r.json()
        assert c.app.state.served.flush()  # type: ignore[attr-defined]
    by_variant = {v: [u for u in users if answers[u]["meta"]["variant"] == v] for v in ("served", "older")}
    assert by_variant["served"] and by_variant["older"]
    for variant, ranker in (("served", newer), ("older", older)):
        for user in by_variant[variant]:
            meta, items = answers[user]["meta"], answers[user]["items"]
            assert meta["ranker_version"] == f"ranker-{ranker}", (user, meta)
            assert {it["explanation"]["ranker"] for it in items} == {f"ranker-{ranker}"}
    with rec.store.session() as s:
        recorded = {r.user_id: r.ranker_version for r in s.scalars(select(ServedList))}
    assert recorded == {u: answers[u]["meta"]["ranker_version"] for u in users}

    # the served ranker's own lists: the control's, and (for most users) not what the older variant got
    served_lists = {u: _ids(rec.recommend(u, 8)) for u in users}
    assert all(_ids(answers[u]["items"]) == served_lists[u] for u in by_variant["served"])
    assert any(_ids(answers[u]["items"]) != served_lists[u] for u in by_variant["older"])
    # the cache keeps the rankers apart: the plain list is cached now, the variant's is not that one
    for user in by_variant["older"]:
        assert _ids(rec.recommend(user, 8, explain=True, rules=ListRules.of(ranker=older))) == \
            _ids(answers[user]["items"])
    rec.store.dispose()

    # the older generation served directly (rolled back) ranks exactly what its variant got
    write_pointer(rankers_root(settings), older)
    direct = Recommender(settings)
    try:
        assert direct.status()["ranker_version"] == f"ranker-{older}"
        for user in by_variant["older"]:
            assert _ids(direct.recommend(user, 8)) == _ids(answers[user]["items"]), user
    finally:
        direct.store.dispose()


def test_rules_and_ids_of_the_served_generation(two_rankers: tuple[Path, str, str], settings: Settings) -> None:
    _, older, newer = two_rankers
    rec = Recommender(settings)
    try:
        user = _users(rec)[0]
        by_id = rec.recommend(user, 6, rules=ListRules.of(ranker=f"ranker-{older}"))
        assert _ids(by_id) == _ids(rec.recommend(user, 6, rules=ListRules.of(ranker=older)))
        assert rec.generations.variant_ranker(newer, rec.generations.current()) is rec.ranker  # nothing loaded
        assert _ids(rec.recommend(user, 6, rules=ListRules.of(ranker=newer))) == _ids(rec.recommend(user, 6))
        with pytest.raises(UnknownRanker, match=rf"no ranker generation 'nope'.*available: .*{older}.*{newer}"):
            rec.recommend(user, 6, rules=ListRules.of(ranker="nope"))
    finally:
        rec.store.dispose()


def test_a_generation_not_stored_or_not_fitting_stops_the_server(two_rankers: tuple[Path, str, str],
                                                                 settings: Settings) -> None:
    _, older, newer = two_rankers
    settings.experiments = ExperimentsSettings(definitions=[_experiment("2020-nope")])
    with pytest.raises(ConfigError, match=rf"experiment 'gens', variant 'older': .*'2020-nope'.*{older}, {newer}"):
        create_app(settings)
    root = rankers_root(settings)
    shutil.copytree(root / older, root / "alien")
    m = json.loads((root / "alien" / MANIFEST).read_text(encoding="utf-8"))
    m.update(version="alien", encoder_id="some-other-encoder")
    (root / "alien" / MANIFEST).write_text(json.dumps(m), encoding="utf-8")
    try:
        settings.experiments = ExperimentsSettings(definitions=[_experiment("ranker-alien")])
        with pytest.raises(ConfigError, match=r"variant 'older'.*some-other-encoder.*generations that fit"):
            create_app(settings)
        exps = parse_experiments([_experiment("alien")])  # past the start-up check: refused on first use
        rec = Recommender(settings)
        try:
            rules = exps.get("gens").variant("older").rules()
            with pytest.raises(UnknownRanker, match="some-other-encoder"):
                rec.recommend(_users(rec)[0], 5, rules=rules)
        finally:
            rec.store.dispose()
    finally:
        shutil.rmtree(root / "alien")


def test_a_generation_gone_before_its_first_use_answers_503_naming_the_variant(
        two_rankers: tuple[Path, str, str], settings: Settings) -> None:
    _, older, _ = two_rankers
    root = rankers_root(settings)
    shutil.copytree(root / older, root / "spare")
    settings.experiments = ExperimentsSettings(definitions=[_experiment("spare")])
    rec = Recommender(settings)
    app = create_app(settings, rec)  # checked: stored and fitting
    shutil.rmtree(root / "spare")  # ... then pruned before any user of the variant asked
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            exps = c.app.state.experiments  # type: ignore[attr-defined]
            user = next(u for u in _users(rec) if exps.assign("recommendations", u).variant.name == "older")
            r = c.get(f"/v1/users/{user}/recommendations?k=5")
            assert r.status_code == 503, r.text
            assert "experiment 'gens', variant 'older': no ranker generation 'spare'" in r.json()["detail"]
            other = next(u for u in _users(rec) if exps.assign("recommendations", u).variant.name == "served")
            assert c.get(f"/v1/users/{other}/recommendations?k=5").status_code == 200
    finally:
        rec.store.dispose()
