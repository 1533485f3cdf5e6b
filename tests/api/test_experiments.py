"""Experiments and business rules over HTTP and the CLI (the fake service on a real SQLite store): the variant in
meta and in the served list, the rules reaching the service, the read-only experiment routes and their shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from recsys.api import create_app
from recsys.config import ExperimentsSettings, get_settings
from recsys.serving.rules import ListRules
from recsys.store import Store
from tests.api.conftest import api_settings
from tests.api.test_feedback import StoringFake, _served
from tests.api.test_feedback import storing as storing  # a fixture

AB = {"name": "ab", "description": "hats first", "variants": [
    {"name": "control", "share": 0.5},
    {"name": "hats", "share": 0.5, "diversity": 0.2, "boosts": {"category:hats": 3.0}, "pins": {"s8": 1}}]}


@pytest.fixture
def exp_client(tmp_path: Path, storing: StoringFake) -> Iterator[TestClient]:
    s = api_settings(tmp_path)
    s.experiments = ExperimentsSettings(definitions=[AB])
    with TestClient(create_app(s, storing), raise_server_exceptions=False) as c:
        yield c


def _users(c: TestClient) -> dict[str, str]:
    exps = c.app.state.experiments  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for i in range(40):
        out.setdefault(exps.assign("recommendations", f"u{i}").variant.name, f"u{i}")
    return out


def test_lists_carry_the_variant_and_it_is_recorded(exp_client: TestClient, storing: StoringFake) -> None:
    users = _users(exp_client)
    answers = {}
    for variant, user in users.items():
        r = exp_client.get(f"/v1/users/{user}/recommendations?k=4")
        assert r.status_code == 200, r.text
        meta = r.json()["meta"]
        assert (meta["experiment"], meta["variant"]) == ("ab", variant)
        answers[meta["recommendation_id"]] = variant
        if variant == "hats":
            assert storing.last_rules == ListRules.of(boosts={"category:hats": 3.0}, pins={"s8": 1})
            assert r.json()["items"][0]["item_id"] == "s8" and "pinned" in r.json()["items"][0]["sources"]
        else:
            assert storing.last_rules is None
    rows = _served(exp_client)
    assert {rid: (rows[rid].experiment, rows[rid].variant) for rid in answers} == \
        {rid: ("ab", v) for rid, v in answers.items()}
    similar = exp_client.get("/v1/items/s1/similar?k=2").json()["meta"]
    assert similar.get("variant") is None  # no experiment runs there


def test_request_rules_reach_the_service_over_the_variant(exp_client: TestClient, storing: StoringFake) -> None:
    user = _users(exp_client)["hats"]
    r = exp_client.get(f"/v1/users/{user}/recommendations", params={
        "k": 5, "boost": ["category:hats=-1", "s2=0.5"], "bury": ["category:shoes"], "pin": ["h3=2"],
        "exploration": 0.2})
    assert r.status_code == 200, r.text
    assert storing.last_rules == ListRules.of(boosts={"category:hats": -1.0, "s2": 0.5}, bury=["category:shoes"],
                                              pins={"s8": 1, "h3": 2}, exploration=0.2)
    items = r.json()["items"]
    assert [it["item_id"] for it in items[:2]] == ["s8", "h3"]
    body = {"k": 4, "bury": ["s8"], "pins": {"h1": 4}, "boosts": {"h2": 1.0}}
    r = exp_client.post(f"/v1/users/{user}/recommendations", json=body)
    assert r.status_code == 200 and r.json()["items"][3]["item_id"] == "h1"
    for bad in ({"pin": "s1=0"}, {"boost": "s1"}, {"exploration": 2}, {"pin": "s1=x"}):
        assert exp_client.get(f"/v1/users/{user}/recommendations", params=bad).status_code == 422, bad


def test_experiment_routes_list_show_and_report(exp_client: TestClient) -> None:
    listed = exp_client.get("/v1/experiments").json()["experiments"]
    assert listed == [{"name": "ab", "description": "hats first", "active": True, "surfaces": ["recommendations"],
                       "control": "control", "salted": False, "started_at": None, "variants": [
                           {"name": "control", "share": 0.5, "changes": {}},
                           {"name": "hats", "share": 0.5, "changes": {"diversity": 0.2,
                                                                      "boosts": {"category:hats": 3.0},
                                                                      "pins": {"s8": 1}}}]}]
    assert exp_client.get("/v1/experiments/ab").json()["name"] == "ab"
    assert exp_client.get("/v1/experiments/nope").status_code == 404
    assert exp_client.get("/v1/experiments/nope/report").status_code == 404
    users = _users(exp_client)
    events = []
    for variant, user in users.items():
        page = exp_client.get(f"/v1/users/{user}/recommendations?k=3").json()
        rid = page["meta"]["recommendation_id"]
        shown = [it["item_id"] for it in page["items"]]
        events += [{"user_id": user, "item_id": i, "type": "impression", "recommendation_id": rid, "position": p}
                   for p, i in enumerate(shown)]
        if variant == "hats":
            events.append({"user_id": user, "item_id": shown[0], "type": "click", "recommendation_id": rid})
    assert exp_client.post("/v1/events", json={"events": events}).json()["stored"] == len(events)
    _served(exp_client)
    report = exp_client.get("/v1/experiments/ab/report").json()
    by = {v["name"]: v for v in report["variants"]}
    assert (by["hats"]["lists"], by["hats"]["impressions"], by["hats"]["clicks"]) == (1, 3, 1)
    assert (by["control"]["users"], by["control"]["clicks"], by["control"]["control"]) == (1, 0, True)
    assert set(by["hats"]["vs_control"]) == {"ctr", "conversion_rate"}
    assert by["hats"]["vs_control"]["ctr"]["difference"] == pytest.approx(1 / 3)
    assert report["exposure_basis"] == "impressions" and "clustered" in report["test"] and report["since"] is None
    assert report["sample_ratio"]["users"] == {"control": 1, "hats": 1} and report["sample_ratio"]["p_value"] is None
    later = exp_client.get("/v1/experiments/ab/report", params={"since": "2999-01-01T00:00:00+01:00"}).json()
    assert later["since"] == "2998-12-31T23:00:00" and sum(v["lists"] for v in later["variants"]) == 0
    for bad in ({"since": "yesterday"}, {"sinse": "2026-01-01"}):
        assert exp_client.get("/v1/experiments/ab/report", params=bad).status_code == 422, bad


def test_a_variants_unknown_items_are_named_and_logged_at_start(tmp_path: Path, storing: StoringFake,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    s = api_settings(tmp_path)
    s.experiments = ExperimentsSettings(definitions=[{"name": "typo", "variants": [
        {"name": "control", "share": 0.5},
        {"name": "pinned", "share": 0.5, "pins": {"s99-typo": 1, "s8": 2}, "boosts": {"category:hats": 1.0},
         "bury": ["gone"]}]}])
    with caplog.at_level("WARNING", logger="recsys.experiments"), \
            TestClient(create_app(s, storing), raise_server_exceptions=False) as c:
        warned = [r.getMessage() for r in caplog.records if "lacks" in r.getMessage()]
        assert len(warned) == 1 and "'typo'" in warned[0] and "'pinned'" in warned[0]
        assert warned[0].endswith("s99-typo, gone")
        exps = c.app.state.experiments  # type: ignore[attr-defined]
        users = {exps.assign("recommendations", f"u{i}").variant.name: f"u{i}" for i in range(40)}
        meta = c.get(f"/v1/users/{users['pinned']}/recommendations?k=3").json()["meta"]
        assert meta["variant"] == "pinned" and meta["unknown_items"] == ["s99-typo", "gone"]
        meta = c.get(f"/v1/users/{users['pinned']}/recommendations?k=3&pin=nosuch=1").json()["meta"]
        assert meta["unknown_items"] == ["nosuch", "s99-typo", "gone"]
        assert "unknown_items" not in c.get(f"/v1/users/{users['control']}/recommendations?k=3").json()["meta"]


def test_a_bad_definition_stops_the_app_at_start(tmp_path: Path, storing: StoringFake) -> None:
    from recsys.errors import ConfigError

    s = api_settings(tmp_path)
    s.experiments = ExperimentsSettings(definitions=[{"name": "x", "variants": [{"name": "a", "share": 0.7}]}])
    with pytest.raises(ConfigError, match="sum"):
        create_app(s, storing)


def test_cli_lists_shows_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_store: Store) -> None:
    from recsys.cli import _register_commands, app

    _register_commands()
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECSYS_DATABASE_URL", str(sqlite_store.engine.url))
    monkeypatch.setenv("RECSYS_EXPERIMENTS__DEFINITIONS", json.dumps([AB]))
    get_settings.cache_clear()
    try:
        def run(*args: str) -> Any:
            res = CliRunner().invoke(app, list(args))
            assert res.exit_code == 0, res.output
            return res.stdout

        assert json.loads(run("experiments", "list", "--json"))["experiments"][0]["name"] == "ab"
        assert "boosts" in run("experiments", "show", "ab")
        report = json.loads(run("experiments", "report", "ab", "--json").splitlines()[-1])
        assert [v["name"] for v in report["variants"]] == ["control", "hats"]
        assert report["variants"][1]["users"] == 0 and report["variants"][1]["vs_control"]["ctr"]["p_value"] is None
        text = run("experiments", "report", "ab")
        assert "variant" in text and "users per variant 0/0: too few users to test the split" in text
        later = json.loads(run("experiments", "report", "ab", "--since", "2999-01-01", "--json").splitlines()[-1])
        assert later["since"] == "2999-01-01T00:00:00"
    finally:
        get_settings.cache_clear()


def test_the_explorer_shows_the_report_with_inline_plots(exp_client: TestClient) -> None:
    for user in _users(exp_client).values():
        exp_client.get(f"/v1/users/{user}/recommendations?k=3")
    _served(exp_client)
    index = exp_client.get("/experiments")
    assert index.status_code == 200 and 'href="/experiments/ab"' in index.text
    page = exp_client.get("/experiments/ab")
    assert page.status_code == 200, page.text
    assert page.text.count("<svg") == 2 and "CTR" in page.text and "hats" in page.text
    assert "Split of the users not tested: too few users" in page.text
    assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page.text
    assert exp_client.get("/experiments/nope").status_code == 404


def _looks(tmp_path: Path, storing: StoringFake) -> tuple[Any, list[str]]:
    """An app whose "looks" experiment (similar items and search) gives half the users the image modality, and the
    list of modalities the service was called with."""
    s = api_settings(tmp_path)
    s.experiments = ExperimentsSettings(definitions=[
        {"name": "looks", "surfaces": ["similar", "search"],
         "variants": [{"name": "fused", "share": 0.5}, {"name": "image", "share": 0.5, "modality": "image"}]}])
    calls: list[str] = []
    real_similar, real_search = storing.similar, storing.search_text
    storing.similar = lambda *a, **kw: calls.append(kw["modality"]) or real_similar(*a, **kw)  # type: ignore
    storing.search_text = lambda *a, **kw: calls.append(kw["modality"]) or real_search(*a, **kw)  # type: ignore
    return create_app(s, storing), calls


def test_similar_and_search_take_the_variants_modality_unless_asked(tmp_path: Path, storing: StoringFake) -> None:
    app, calls = _looks(tmp_path, storing)
    with TestClient(app, raise_server_exceptions=False) as c:
        exps = c.app.state.experiments  # type: ignore[attr-defined]
        user = next(f"u{i}" for i in range(50) if exps.assign("similar", f"u{i}").variant.name == "image")
        meta = c.get(f"/v1/items/s1/similar?k=2&user_id={user}").json()["meta"]
        assert (meta["experiment"], meta["variant"]) == ("looks", "image")
        c.get(f"/v1/items/s1/similar?k=2&user_id={user}&modality=text")
        c.get(f"/v1/search/text?q=hat&k=2&user_id={user}")
        c.get("/v1/search/text?q=hat&k=2")
        assert calls == ["image", "text", "image", "fused"]
        rows = _served(c)
        assert {(r.source, r.variant) for r in rows.values() if r.user_id == user} == \
            {("similar", "image"), ("search_text", "image")}


def test_the_client_sends_rules_and_reads_the_variant(exp_client: TestClient, storing: StoringFake) -> None:
    from recsys.client import Client

    c = Client(http=exp_client)
    user = _users(exp_client)["hats"]
    page = c.recommend(user, k=4, boosts={"h2": 1.0}, bury=["category:shoes"], pins={"h1": 2}, exploration=0.25)
    assert page.variant == "hats" and page.meta["experiment"] == "ab"
    assert storing.last_rules == ListRules.of(boosts={"category:hats": 3.0, "h2": 1.0}, bury=["category:shoes"],
                                              pins={"s8": 1, "h1": 2}, exploration=0.25)
    assert c.recommend("nobody", k=2).variant in ("control", "hats")


def test_the_client_reads_experiments_and_their_reports(exp_client: TestClient) -> None:
    from recsys.client import Client
    from recsys.errors import NotFound

    c = Client(http=exp_client)
    assert [e["name"] for e in c.experiments()] == ["ab"] and c.experiment("ab")["control"] == "control"
    report = c.experiment_report("ab", since=datetime(2020, 1, 1))
    assert report["experiment"] == "ab" and report["since"].startswith("2020-01-01")
    assert {v["name"] for v in report["variants"]} == {"control", "hats"}
    with pytest.raises(NotFound):
        c.experiment("nope")


def test_session_lists_take_the_rules_too(exp_client: TestClient, storing: StoringFake) -> None:
    body = {"events": [{"item_id": "s1", "type": "like"}], "k": 4, "pins": {"h5": 1}, "bury": ["s2"]}
    r = exp_client.post("/v1/sessions/recommendations", json=body)
    assert r.status_code == 200, r.text
    assert storing.last_rules == ListRules.of(pins={"h5": 1}, bury=["s2"])
    assert r.json()["meta"].get("variant") is None  # no user: no experiment


def test_post_similar_and_search_and_the_client_join_the_experiment(tmp_path: Path, storing: StoringFake) -> None:
    from recsys.client import Client

    app, calls = _looks(tmp_path, storing)
    with TestClient(app, raise_server_exceptions=False) as c:
        exps = c.app.state.experiments  # type: ignore[attr-defined]
        user = next(f"u{i}" for i in range(50) if exps.assign("similar", f"u{i}").variant.name == "image")
        r = c.post("/v1/items/s1/similar", json={"k": 2, "user_id": user})
        assert r.status_code == 200, r.text
        assert (r.json()["meta"]["experiment"], r.json()["meta"]["variant"]) == ("looks", "image")
        c.post("/v1/search/text", json={"query": "hat", "k": 2, "user_id": user, "modality": "text"})
        c.post("/v1/search/text", json={"query": "hat", "k": 2})
        client = Client(http=c)
        assert client.similar("s1", k=2, user_id=user).variant == "image"
        assert client.search_text("hat", k=2, user_id=user).variant == "image"
        assert client.search_text("hat", k=2).variant is None
        assert calls == ["image", "text", "fused", "image", "image", "fused"]
        assert c.post("/v1/search/text", json={"query": "hat", "user_id": "bad\x01"}).status_code == 422
        rows = _served(c)
        assert {(r.source, r.variant) for r in rows.values() if r.user_id == user} == \
            {("similar", "image"), ("search_text", "image")}
