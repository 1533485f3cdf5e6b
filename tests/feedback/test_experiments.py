"""Experiments: stable salted assignment with the configured shares, definitions checked at load, the report's
counts exactly the events sent, and its p-values against known answers."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from recsys.config import ExperimentsSettings, Settings
from recsys.errors import ConfigError, NotFound
from recsys.experiments import experiment_report, load_experiments, parse_experiments
from recsys.experiments.report import clustered_rate, compare, two_proportion_p
from recsys.feedback import Served, ServedLog
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import

THREE = {"name": "three", "variants": [{"name": "a", "share": 0.2}, {"name": "b", "share": 0.3},
                                       {"name": "c", "share": 0.5, "diversity": 0.3}]}


def test_assignment_is_stable_and_follows_the_shares() -> None:
    exps = parse_experiments([THREE])
    users = [f"user-{i}" for i in range(20_000)]
    first = [exps.assign("recommendations", u).variant.name for u in users]  # type: ignore[union-attr]
    again = parse_experiments([THREE])  # another process: same answer, nothing stored
    assert first == [again.assign("recommendations", u).variant.name for u in users]  # type: ignore[union-attr]
    counts = Counter(first)
    for name, share in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        assert counts[name] / len(users) == pytest.approx(share, abs=0.015)
    resalted = parse_experiments([{**THREE, "salt": "run-2"}])
    moved = sum(a != resalted.assign("recommendations", u).variant.name  # type: ignore[union-attr]
                for a, u in zip(first, users, strict=True))
    assert 0.5 < moved / len(users) < 0.75  # independent: 1 - (0.04 + 0.09 + 0.25) = 0.62 expected


def test_only_the_running_surfaces_and_known_users_are_assigned() -> None:
    exps = parse_experiments([THREE, {"name": "old", "active": False, "variants": [{"name": "x", "share": 1}]}])
    assert exps.assign("similar", "u1") is None and exps.assign("recommendations", None) is None
    got = exps.assign("recommendations", "u1")
    assert got is not None and got.experiment == "three"
    assert exps.get("old").public()["variants"] == [{"name": "x", "share": 1.0, "changes": {}}]
    with pytest.raises(NotFound):
        exps.get("nope")


def test_a_requests_explicit_rules_win_over_its_variant() -> None:
    from recsys.api.routes.experiments import list_rules
    from recsys.api.schemas import RecommendRequest

    exps = parse_experiments([{"name": "x", "variants": [
        {"name": "v", "share": 1, "pins": {"i1": 1}, "exploration": 0.3, "diversity": 0.2}]}])
    assigned = exps.assign("recommendations", "u1")
    rules, diversity = list_rules(RecommendRequest(exploration=0.0, pins={"i9": 1}), assigned)
    assert rules is not None and dict(rules.pins) == {"i9": 1} and rules.exploration == 0.0 and diversity == 0.2
    rules, _ = list_rules(RecommendRequest(exploration=0.0), assigned)  # only an explicit 0: still the request's
    assert rules is not None and rules.exploration == 0.0 and dict(rules.pins) == {"i1": 1}
    rules, _ = list_rules(RecommendRequest(), assigned)
    assert rules is not None and rules.exploration == 0.3


@pytest.mark.parametrize("bad, message", [
    ({"name": "x", "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]}, "sum to 0.9"),
    ({"name": "x", "control": "z", "variants": [{"name": "a", "share": 1}]}, "control"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "source": "random"}]}, "source"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "pins": {"i": 0}}]}, "position"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "colour": "red"}]}, "colour"),
    ({"name": "x", "surfaces": ["similar", "search"],  # ignored there: the test would be an A/A one
      "variants": [{"name": "a", "share": 1, "pins": {"i": 1}}]}, "only personal lists honour"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "modality": "image"}]}, "only similar items and search"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "bury": [f"i{n}" for n in range(1001)]}]}, "at most 1000"),
    ({"name": "x", "variants": [{"name": "a", "share": 0.6}, {"name": "b", "share": 0.5}]}, "^experiment 'x': variant"),
    ({"name": "x", "variants": [{"name": "a", "share": float("nan")}]}, "share: Input should be a finite number"),
    # strings and booleans are not taken for numbers or flags (a share of true read as 1.0)
    ({"name": "x", "variants": [{"name": "a", "share": "1"}]}, "share: Input should be a valid number"),
    ({"name": "x", "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": True}]}, "valid number"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "exploration": "0.1"}]}, "exploration"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "exclude_seen": "yes"}]}, "exclude_seen"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "pins": {"i": "2"}}]}, "pins"),
    ({"name": "x", "active": "no", "variants": [{"name": "a", "share": 1}]}, "active"),
    ({"name": "x", "surfaces": ["similar", "similar"], "variants": [{"name": "a", "share": 1}]}, "surfaces repeat"),
    ({"name": "x", "variants": [{"name": "a", "share": 1, "pins": {"i": 1}, "bury": ["i"]}]}, "pinned and buried"),
])
def test_bad_definitions_fail_at_load_naming_the_field(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_experiments([bad])


def test_two_active_experiments_on_one_surface_are_refused() -> None:
    with pytest.raises(ConfigError, match="at most one"):
        parse_experiments([THREE, {**THREE, "name": "four"}])


def test_definitions_come_from_the_setting_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps({"experiments": [{"name": "sim", "surfaces": ["similar"],
                                                 "variants": [{"name": "a", "share": 1, "modality": "image"}]}]}))
    s = Settings(home=tmp_path, experiments=ExperimentsSettings(definitions=[THREE], file=path))
    assert [e.name for e in load_experiments(s).all] == ["three", "sim"]
    path.write_text("{oops")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_experiments(s)
    for text, says in (("42", "holds int where a JSON list"), ('{"experiments": 5}', "holds int"),
                       ('{"experiment": []}', "unknown key\\(s\\) 'experiment'")):
        path.write_text(text)  # each had been a TypeError traceback, or every experiment silently off
        with pytest.raises(ConfigError, match=says):
            load_experiments(s)
    path.write_text(json.dumps({"_comment": "kept", "$schema": "x", "experiments": []}))
    assert [e.name for e in load_experiments(s).all] == ["three"]


def test_two_proportion_p_is_the_chi_square_without_correction() -> None:
    from scipy.stats import chi2_contingency

    for k1, n1, k2, n2 in ((100, 1000, 150, 1000), (3, 40, 9, 50), (500, 600, 480, 610)):
        table = [[k1, n1 - k1], [k2, n2 - k2]]
        expected = chi2_contingency(table, correction=False)[1]
        assert two_proportion_p(k1, n1, k2, n2) == pytest.approx(expected, rel=1e-9)
    assert two_proportion_p(0, 0, 1, 2) is None and two_proportion_p(0, 10, 0, 10) == 1.0


def test_clustered_test_with_one_exposure_per_user_is_the_unpooled_z_test() -> None:
    from scipy.stats import norm

    c1, c2 = np.r_[np.ones(150), np.zeros(850)], np.r_[np.ones(100), np.zeros(900)]
    n = np.ones(1000)
    out = compare((c1, n), (c2, n))
    se = math.sqrt((0.15 * 0.85 + 0.1 * 0.9) / 999)  # m/(m-1) times the unpooled variance
    assert out["difference"] == pytest.approx(0.05)
    assert out["p_value"] == pytest.approx(2 * norm.sf(0.05 / se), rel=1e-9)
    assert out["low"] < 0.05 < out["high"] and out["p_value"] < 0.001


def test_arms_without_spread_get_the_pooled_test_not_certainty() -> None:
    n = np.ones(2)  # two users each side, one exposure each: every control user clicked, no variant user did
    out = compare((np.zeros(2), n), (np.ones(2), n))
    assert out["difference"] == -1.0 and out["low"] is None and out["high"] is None
    assert out["p_value"] == pytest.approx(two_proportion_p(0, 2, 2, 2)) and out["p_value"] > 0.04 and out["note"]


def test_clicks_beyond_exposures_are_capped_and_counted_apart(tmp_path: Path) -> None:
    from recsys.experiments.report import _arm

    arm = _arm({"u1": {"lists": 1, "items_served": 5, "impressions": 1, "clicks": 5, "conversions": 0}},
               "impressions")
    clicks, n = arm["_per_user"]["ctr"]
    assert clicks.tolist() == [1.0] and n.tolist() == [1.0]
    assert arm["clicks"] == 5 and arm["left_out"] == {"clicks": 4, "conversions": 0} and arm["ctr"]["rate"] == 1.0


def _items(store: Store, tmp_path: Path, n: int = 10) -> list[str]:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps({"item_id": f"i{j}", "title": f"item {j}"}) for j in range(n)))
    run_import(store, "items", path)
    return [f"i{j}" for j in range(n)]


def test_shown_rates_and_the_comparison_rest_on_the_same_numbers(tmp_path: Path, store: Store) -> None:
    """c3's client posted clicks and no impressions: its clicks had counted in the control's shown CTR (0.35, twice
    the variant's) but not in the comparison (the variant +11% better)."""
    items = _items(store, tmp_path)
    exp = parse_experiments([{"name": "ab", "variants": [{"name": "control", "share": 0.5},
                                                        {"name": "b", "share": 0.5, "diversity": 0.3}]}]).get("ab")
    log = ServedLog(store, linger_s=0.0)
    events: list[dict[str, object]] = []
    for user, variant, impressions, clicks in (("c1", "control", 10, 2), ("c2", "control", 10, 1),
                                               ("c3", "control", 0, 4), ("b1", "b", 10, 3), ("b2", "b", 10, 1),
                                               ("b3", "b", 10, 1)):
        rid = f"{user:0>32}"
        log.record(Served(rid, "recommend", tuple(items), user, experiment="ab", variant=variant))
        events += [{"user_id": user, "item_id": items[p], "type": "impression", "recommendation_id": rid,
                    "position": p} for p in range(impressions)]
        events += [{"user_id": user, "item_id": items[p], "type": "click", "recommendation_id": rid}
                   for p in range(clicks)]
    assert log.flush(30)
    log.close()
    assert all(r.status == "stored" for r in ingest_events(store, events))
    by = {v["name"]: v for v in experiment_report(store, exp)["variants"]}
    control, b = by["control"], by["b"]
    assert (control["clicks"], control["exposures"], control["left_out"]["clicks"]) == (7, 20, 4)
    assert control["ctr"]["rate"] == pytest.approx(3 / 20) and b["ctr"]["rate"] == pytest.approx(5 / 30)
    assert b["left_out"] == {"clicks": 0, "conversions": 0}
    cmp = b["vs_control"]["ctr"]
    assert cmp["difference"] == pytest.approx(b["ctr"]["rate"] - control["ctr"]["rate"])
    assert cmp["relative"] == pytest.approx(cmp["difference"] / control["ctr"]["rate"])


def test_a_new_run_is_reported_alone(tmp_path: Path, store: Store) -> None:
    """A new salt reshuffles the users; lists record the experiment's name, not its salt: the new definition's
    started_at keeps the old run's lists (and users now in the other arm) out of its report."""
    from datetime import timedelta

    from recsys.store.tables import utcnow

    items = tuple(_items(store, tmp_path, 2))
    variants = [{"name": "control", "share": 0.5}, {"name": "b", "share": 0.5, "diversity": 0.3}]
    old = parse_experiments([{"name": "ab", "salt": "run1", "variants": variants}]).get("ab")
    started = utcnow() - timedelta(minutes=1)
    new = parse_experiments([{"name": "ab", "salt": "run2", "started_at": started.isoformat() + "Z",
                              "variants": variants}]).get("ab")
    assert new.started_at == started and new.public()["started_at"] == started.isoformat()
    log = ServedLog(store, linger_s=0.0)
    users = [f"u{i}" for i in range(60)]
    for n, u in enumerate(users):  # last month's run
        log.record(Served(f"{n:032x}", "recommend", items, u, experiment="ab", variant=old.assign(u).name,
                          created_at=utcnow() - timedelta(days=30)))
    for n, u in enumerate(users[:20]):  # the new run
        log.record(Served(f"{n + 100:032x}", "recommend", items, u, experiment="ab", variant=new.assign(u).name))
    assert log.flush(30)
    log.close()
    report = experiment_report(store, new)
    assert report["since"] == started.isoformat()
    assert sum(v["lists"] for v in report["variants"]) == 20 and sum(v["users"] for v in report["variants"]) == 20
    every = experiment_report(store, new, since=utcnow() - timedelta(days=60))  # an explicit since wins
    assert sum(v["lists"] for v in every["variants"]) == 80
    assert sum(v["lists"] for v in experiment_report(store, old)["variants"]) == 80  # no started_at: all


def test_clustering_widens_the_test_when_users_differ() -> None:
    rng = np.random.default_rng(0)
    n = np.full(200, 50.0)  # 200 users, 50 exposures each, user-level rates spread widely
    rates = rng.beta(1, 9, size=(2, 200))
    c = rng.binomial(50, rates).astype(float)
    out = compare((c[0], n), (c[1], n))
    assert out["p_value"] > out["p_value_unclustered"]
    r, var = clustered_rate(c[0], n)
    assert r == pytest.approx(c[0].sum() / n.sum()) and var > 0


def test_report_counts_are_the_events_sent_exactly(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps({"item_id": f"i{j}", "title": f"item {j}"}) for j in range(5)))
    run_import(store, "items", path)
    exp = parse_experiments([{"name": "ab", "variants": [{"name": "control", "share": 0.5},
                                                        {"name": "popular", "share": 0.5, "source": "popular"}]}])
    log = ServedLog(store, linger_s=0.0)
    rng = np.random.default_rng(1)
    sent: Counter[tuple[str, str]] = Counter()
    events = []
    for u in range(40):
        user = f"u{u}"
        variant = exp.assign("recommendations", user).variant.name  # type: ignore[union-attr]
        for n in range(3):
            rid = f"{u:016x}{n:016x}"
            items = [f"i{j}" for j in range(5)]
            log.record(Served(rid, "recommend", tuple(items), user, experiment="ab", variant=variant))
            sent[variant, "lists"] += 1
            for pos, item in enumerate(items):
                events.append({"user_id": user, "item_id": item, "type": "impression", "recommendation_id": rid,
                               "position": pos})
                sent[variant, "impressions"] += 1
                for kind, p in (("click", 0.3), ("purchase", 0.1)):
                    if rng.random() < p:
                        events.append({"user_id": user, "item_id": item, "type": kind, "recommendation_id": rid})
                        sent[variant, {"click": "clicks", "purchase": "conversions"}[kind]] += 1
    events.append({"user_id": "u0", "item_id": "i0", "type": "click"})  # no list: not counted
    log.record(Served("f" * 32, "recommend", ("i1",), "u0"))  # outside the experiment: not counted
    assert log.flush(30)
    log.close()
    assert all(r.status == "stored" for r in ingest_events(store, events))
    report = experiment_report(store, exp.get("ab"))
    assert report["exposure_basis"] == "impressions" and report["control"] == "control"
    by = {v["name"]: v for v in report["variants"]}
    for name, v in by.items():
        for field in ("lists", "impressions", "clicks", "conversions"):
            assert v[field] == sent[name, field], (name, field)
        assert v["exposures"] == v["impressions"] and v["ctr"]["rate"] == pytest.approx(v["clicks"] / v["exposures"])
    assert by["control"]["users"] + by["popular"]["users"] == 40
    assert "vs_control" not in by["control"] and 0.0 <= by["popular"]["vs_control"]["ctr"]["p_value"] <= 1.0


def test_variant_items_are_looked_up_once_and_again_only_while_missing() -> None:
    from recsys.errors import StoreUnavailable
    from recsys.experiments import VariantItems

    exps = parse_experiments([{"name": "x", "variants": [
        {"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "pins": {"i1": 1, "typo": 2},
                                      "boosts": {"category:hats": 1.0, "i1": 2.0}, "bury": ["gone"]}]}])
    b = next(a for u in range(50) if (a := exps.assign("recommendations", f"u{u}")) and a.variant.name == "b")
    assert b.variant.item_ids() == ["i1", "typo", "gone"]
    assert b.variant.category_keys() == ["category:hats"]
    items = VariantItems(exps)
    named = ["i1", "typo", "gone", "category:hats"]
    assert items.to_check(b) == named  # not looked up yet: all of them, per request

    def down(ids: object) -> list[str]:
        raise StoreUnavailable("database is unreachable")

    assert items.check(down) == {} and items.to_check(b) == named  # the server still starts
    lookups: list[list[str]] = []
    found = items.check(lambda ids: lookups.append(list(ids)) or [i for i in ids if i != "i1"],
                        lambda cats: lookups.append(list(cats)) or [])
    assert found == {("x", "b"): ["typo", "gone"]} and lookups == [["i1", "typo", "gone"], ["category:hats"]]
    assert items.to_check(b) == ["typo", "gone"] and items.to_check(None) == []


def test_sample_ratio_mismatch_is_flagged_only_when_the_split_leaves_the_shares() -> None:
    from recsys.experiments.report import sample_ratio

    shares = {"control": 0.5, "b": 0.3, "c": 0.2}
    fair = sample_ratio({"control": 503, "b": 296, "c": 201}, shares)
    assert fair["mismatch"] is False and fair["p_value"] > 0.5 and fair["expected"] == {"control": 500.0, "b": 300.0,
                                                                                         "c": 200.0}
    # a tenth of "b"'s users missing: what an arm whose requests fail more often looks like
    off = sample_ratio({"control": 10000, "b": 5400, "c": 4000}, shares)
    assert off["mismatch"] is True and off["p_value"] < 0.001 and "biased" in off["note"]
    few = sample_ratio({"control": 6, "b": 2, "c": 1}, shares)
    assert few["p_value"] is None and few["mismatch"] is None and "too few" in few["note"]


def test_the_report_tests_the_split_of_its_recorded_users(tmp_path: Path, store: Store) -> None:
    """Users recorded under one arm only (a cache that served the other arm's lists unrecorded) are flagged."""
    from recsys.experiments.report import sample_ratio

    items = tuple(_items(store, tmp_path, 2))
    exp = parse_experiments([{"name": "ab", "variants": [{"name": "control", "share": 0.5},
                                                        {"name": "b", "share": 0.5, "diversity": 0.3}]}]).get("ab")
    log = ServedLog(store, linger_s=0.0)
    users = [f"u{i}" for i in range(400)]
    recorded = [u for u in users if exp.assign(u).name == "control" or int(u[1:]) % 3 == 0]
    for n, u in enumerate(recorded):
        log.record(Served(f"{n:032x}", "recommend", items, u, experiment="ab", variant=exp.assign(u).name))
    log.record(Served(f"{999:032x}", "recommend", items, None, experiment="ab", variant="b"))  # anonymous: not a user
    assert log.flush(30)
    log.close()
    srm = experiment_report(store, exp)["sample_ratio"]
    by = Counter(exp.assign(u).name for u in recorded)
    assert srm["users"] == {"control": by["control"], "b": by["b"]} and srm["mismatch"] is True
    assert sample_ratio(Counter(exp.assign(u).name for u in users), {"control": 0.5, "b": 0.5})["mismatch"] is False
