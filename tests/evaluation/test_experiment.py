"""run_evaluation: the JSON contract of DESIGN.md section 4 on a split with a known answer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation import Batch, best_other, make_baselines, markdown_table, run_evaluation, temporal_split


def frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "type": "purchase",
                         "value": 1.0, "ts": pd.to_datetime([r[2] for r in rows])})


EVENTS = frame([
    ("u1", "a", "2020-01-01"), ("u1", "b", "2020-01-02"), ("u1", "new", "2020-01-05"),   # target: new (cold item)
    ("u2", "a", "2020-01-01"), ("u2", "b", "2020-01-01"), ("u2", "c", "2020-01-02"),
    ("u2", "d", "2020-01-02"), ("u2", "e", "2020-01-02"), ("u2", "f", "2020-01-03"),
    ("u2", "a", "2020-01-06"), ("u2", "c", "2020-01-06"),                                  # targets: a, c
])


def fixed(lists: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return lambda user_id, history, k: lists[user_id]


def test_contract_and_known_metrics() -> None:
    split = temporal_split(EVENTS, "hm")
    assert split.targets == {"u1": ["new"], "u2": ["a", "c"]}
    ours = fixed({"u1": ["x", "new"], "u2": ["a", "y"]})
    batch = Batch(lambda users, hists, k: [["new"] if u == "u1" else ["c", "a"] for u in users])
    res = run_evaluation(split, {"ours": ours, "popular": fixed({"u1": ["a"], "u2": ["a"]}), "oracle": batch},
                         k=2, catalogue_size=10, timings={"fit_ours": 1.23456})
    json.dumps(res)
    assert res["k"] == 2 and res["protocol"] == "last_day" and res["users"] == 2
    m = res["metrics"]
    assert set(m) == {"recall", "ndcg", "hit_rate", "mrr", "coverage"}
    # u1: hit at 2 of 1 target -> recall 1, mrr .5, ndcg 1/log2(3); u2: hit at 1 of 2 -> recall .5, mrr 1
    assert m["recall"] == pytest.approx(0.75)
    assert m["mrr"] == pytest.approx(0.75)
    assert m["hit_rate"] == pytest.approx(1.0)
    assert m["ndcg"] == pytest.approx((1 / np.log2(3) + 1 / (1 + 1 / np.log2(3))) / 2)
    assert m["coverage"] == pytest.approx(4 / 10)
    assert set(res["baselines"]) == {"popular"} and set(res["peers"]) == {"oracle"}
    assert res["peers"]["oracle"]["recall"] == pytest.approx(1.0)
    assert res["baselines"]["popular"]["recall"] == pytest.approx(0.25)
    # cold items: only "new" (u1) has no training interaction
    ci = res["slices"]["cold_items"]
    assert ci["users"] == 1 and ci["targets"] == 1
    assert ci["recall"] == pytest.approx(1.0) and ci["mrr"] == pytest.approx(0.5)
    assert ci["baselines"]["popular"]["recall"] == 0.0
    # cold users (<= 5 history events): u1 (2 events); u2 has 6
    cu = res["slices"]["cold_users"]
    assert cu["users"] == 1 and cu["recall"] == pytest.approx(1.0)
    # new to the user: u1's "new" (hit); u2's targets a and c are both in u2's history: the repeats slice
    nu, rep = res["slices"]["new_to_user"], res["slices"]["repeats"]
    assert nu["users"] == 1 and nu["targets"] == 1 and nu["recall"] == pytest.approx(1.0)
    assert rep["users"] == 1 and rep["targets"] == 2 and rep["recall"] == pytest.approx(0.5)
    assert rep["baselines"]["popular"]["recall"] == pytest.approx(0.5)
    assert res["timings_s"]["fit_ours"] == pytest.approx(1.235)
    assert {"ours", "popular", "oracle", "evaluate_total"} <= set(res["timings_s"])
    assert best_other(res) == ("oracle", 1.0)
    table = markdown_table(res, title="tiny")
    assert "| ours | 0.7500 |" in table and "| oracle |" in table
    head, rule, ours = [line for line in table.splitlines() if line.startswith("|")][:3]
    assert "recall@2 new to user (1 users)" in head and "recall@2 repeats (1 users)" in head
    assert rule.count("---") == 10 and ours.count("|") == 11
    assert ours.endswith("| 1.0000 | 0.5000 |")  # ours: new to user (u1's "new" hit), repeats (u2: a of a, c)


def test_a_dislike_is_not_an_interaction_in_the_slices() -> None:
    """A target the shopper disliked before is new to them, and an item only disliked in training is cold."""
    ev = pd.concat([EVENTS, pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["new", "g"], "type": "dislike",
                                          "value": 1.0, "ts": pd.to_datetime(["2020-01-03", "2020-01-02"])}),
                    frame([("u2", "g", "2020-01-06")])], ignore_index=True)
    split = temporal_split(ev, "hm")
    assert split.targets == {"u1": ["new"], "u2": ["a", "c", "g"]}
    res = run_evaluation(split, {"ours": fixed({"u1": ["new"], "u2": ["g", "a"]})}, k=2, catalogue_size=10)
    nu, rep, ci = (res["slices"][s] for s in ("new_to_user", "repeats", "cold_items"))
    assert nu["users"] == 2 and nu["targets"] == 2 and nu["recall"] == pytest.approx(1.0)  # new (u1), g (u2)
    assert rep["targets"] == 2 and rep["recall"] == pytest.approx(0.5)  # u2's a and c
    assert ci["targets"] == 2 and "g" not in split.train_items and "new" not in split.train_items


def test_real_baselines_and_missing_main() -> None:
    split = temporal_split(EVENTS, "hm")
    ids = ["a", "b", "c", "d", "e", "f", "new"]
    rng = np.random.default_rng(0)
    res = run_evaluation(split, make_baselines(split, ids, rng.normal(size=(7, 4)).astype(np.float32)), k=3,
                         catalogue_size=len(ids))
    assert res["metrics"] is None
    assert set(res["baselines"]) == {"popular", "item_cooccurrence", "content_knn"}
    for m in res["baselines"].values():
        assert 0.0 <= m["recall"] <= 1.0 and 0.0 <= m["coverage"] <= 1.0


def test_bad_batch_length_is_an_error() -> None:
    split = temporal_split(EVENTS, "hm")
    with pytest.raises(ValueError, match="batch recommender"):
        run_evaluation(split, {"ours": Batch(lambda users, hists, k: [])}, k=2)


def test_public_api() -> None:
    import recsys.evaluation as ev

    for name in ev.__all__:
        assert getattr(ev, name) is not None


def test_evaluate_store_fits_ours_on_train_only() -> None:
    from recsys.evaluation import evaluate_store

    seen: dict[str, set[str]] = {}

    def make_ours(split):  # type: ignore[no-untyped-def]
        seen["train_items"] = split.train_items
        return lambda user_id, history, k: ["new", "a", "c"]

    ids = ["a", "b", "c", "d", "e", "f", "new"]
    res = evaluate_store(EVENTS, make_ours=make_ours, item_ids=ids, vectors=np.eye(7, dtype=np.float32), k=3,
                         part=None)
    assert "new" not in seen["train_items"]            # the target never reached the fit
    assert res["metrics"]["recall"] == pytest.approx(1.0)
    assert {"split", "fit_ours", "fit_baselines"} <= set(res["timings_s"])
    assert res["split"]["targets"] == 3


def test_evaluate_test_events_replays_histories(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from recsys.evaluation import evaluate_test_events

    p = tmp_path / "u.data"
    p.write_text("7\t1\t4\t100\n7\t2\t5\t200\n7\t3\t5\t300\n8\t1\t3\t150\n8\t2\t3\t250\n")
    sent: list[dict] = []

    def replay(records):  # type: ignore[no-untyped-def]
        sent.extend(records)
        return ["stored"] * len(records)

    store_events = pd.DataFrame({"user_id": ["s"], "item_id": ["1"], "type": ["rating"], "value": [5.0],
                                 "ts": pd.to_datetime(["1970-01-01"])})
    res = evaluate_test_events(p, "movielens", store_events=store_events, replay=replay,
                               make_ours=lambda split: (lambda u, h, k: ["3", "2"]), item_ids=["1", "2", "3"],
                               vectors=None, k=2, known_users={"s"})
    assert [(r["user_id"], r["item_id"]) for r in sent] == [("7", "1"), ("7", "2"), ("8", "1")]
    assert res["replayed"] == {"stored": 3} and res["users"] == 2
    assert res["metrics"]["recall"] == pytest.approx(1.0)        # targets 3 (user 7) and 2 (user 8)
    assert res["metrics"]["mrr"] == pytest.approx(0.75)


def test_test_events_with_nothing_to_evaluate_say_why(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An empty file, or one whose items the store does not know, is a message, not a traceback."""
    from recsys.errors import ImportFailed, ValidationFailed
    from recsys.evaluation import evaluate_test_events

    store_events = pd.DataFrame({"user_id": ["s"], "item_id": ["1"], "type": ["rating"], "value": [5.0],
                                 "ts": pd.to_datetime(["1970-01-01"])})
    kw = {"store_events": store_events, "replay": None, "make_ours": None, "vectors": None, "k": 2}
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ImportFailed, match="empty"):
        evaluate_test_events(empty, "hm", item_ids=["1"], **kw)
    other = tmp_path / "u.data"
    other.write_text("7\t91\t4\t100\n7\t92\t5\t200\n")
    with pytest.raises(ValidationFailed, match="nothing to evaluate.*2 of them on items unknown"):
        evaluate_test_events(other, "movielens", item_ids=["1"], **kw)


def test_an_item_first_sold_after_the_target_time_is_cold() -> None:
    """Other shoppers' purchases after a test user's target time are in the training part (leave-last-out), yet
    the item was new as of that user's "now": it counts in the cold-item slice; one sold before it does not."""
    later = frame([("t1", "fresh", "2020-01-08"), ("t2", "fresh", "2020-01-09"), ("t3", "old", "2020-01-01")])
    ev = pd.concat([EVENTS, later, frame([("u1", "fresh", "2020-01-05"), ("u1", "old", "2020-01-05")])],
                   ignore_index=True)
    split = temporal_split(ev, "hm", part=None)
    assert split.targets["u1"] == ["new", "fresh", "old"] and "fresh" in split.train_items
    res = run_evaluation(split, {"ours": fixed({"u1": ["fresh"], "u2": ["a"]})}, k=2, catalogue_size=10)
    ci = res["slices"]["cold_items"]
    assert ci["users"] == 1 and ci["targets"] == 2  # u1's "new" and "fresh"; "old" was bought before 2020-01-05
    assert ci["recall"] == pytest.approx(0.5)
    assert "before the user's target time" in ci["definition"]
    same_day = frame([("t4", "b2", "2020-01-05"), ("u1", "b2", "2020-01-05")])  # first sold on the target day
    split = temporal_split(pd.concat([ev, same_day], ignore_index=True), "hm", part=None)
    assert run_evaluation(split, {}, k=2)["slices"]["cold_items"]["targets"] == 3


def test_bootstrap_in_chunks_gives_the_same_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resampling is drawn a chunk of rounds at a time: for a seed, the intervals are those of drawing every
    round at once (the former way, computed here), whatever the chunk size."""
    from recsys.evaluation import experiment

    rng = np.random.default_rng(5)
    main = rng.random(301)
    others = {"a": rng.random(301), "b": (rng.random(301) > 0.7).astype(float)}
    idx = np.random.default_rng(3).integers(0, 301, size=(500, 301))
    want_main = main[idx].mean(axis=1)
    want_b = (main - others["b"])[idx].mean(axis=1)
    for chunk in (1 << 21, 301 * 7, 5):  # one chunk, 7 rounds a chunk, one round a chunk
        monkeypatch.setattr(experiment, "BOOTSTRAP_CHUNK", chunk)
        got = experiment.paired_intervals(main, others, rounds=500, seed=3)
        assert got["main"] == [round(float(np.quantile(want_main, q)), 6) for q in (0.025, 0.975)]
        assert got["differences"]["b"]["ci"] == [round(float(np.quantile(want_b, q)), 6) for q in (0.025, 0.975)]
        assert got["differences"]["b"]["share_ahead"] == round(float((want_b > 0).mean()), 4)


def test_bootstrap_memory_does_not_grow_with_rounds_times_users() -> None:
    """200k users, 3 models: drawing every round at once held (rounds, users) indices and values (~1 GiB at 400
    rounds); in chunks the peak stays at a few tens of MiB."""
    import tracemalloc

    from recsys.evaluation.experiment import paired_intervals

    n = 200_000
    rng = np.random.default_rng(0)
    main, others = rng.random(n), {"a": rng.random(n), "b": rng.random(n)}
    tracemalloc.start()
    try:
        res = paired_intervals(main, others, rounds=400)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res["rounds"] == 400 and set(res["differences"]) == {"a", "b"}
    assert peak < 96 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_baselines_and_targets_follow_the_served_catalogue() -> None:
    """Items everyone bought but ours may not serve (hidden: ``exclude``; deleted or never indexed: outside
    ``item_ids``) are no baseline's slot, and a target on one is dropped for every model alike, and counted."""
    from recsys.evaluation import evaluate_store

    ev = frame([*((f"p{i}", item, "2020-01-01") for i in range(5) for item in ("hot", "gone")),
                ("q1", "x", "2020-01-01"), ("q2", "x", "2020-01-01"),
                ("u", "a", "2020-01-01"), ("u", "x", "2020-01-03"), ("u", "hot", "2020-01-03")])
    res = evaluate_store(ev, make_ours=lambda split: (lambda u, h, k: ["x"]),
                         item_ids=["a", "x", "hot"], vectors=np.eye(3, dtype=np.float32), k=1, part=None,
                         exclude={"hot"})
    assert res["users"] == 1 and res["targets"] == 1 and res["targets_unservable"] == 1  # "hot" dropped
    assert res["metrics"]["recall"] == 1.0
    for name in ("popular", "item_cooccurrence", "content_knn"):
        assert res["baselines"][name]["recall"] == 1.0, name  # x: the most bought item ours may serve


def test_an_empty_part_says_so() -> None:
    """Eligible users who all fall in other parts than the one asked: the message says which part and what to do,
    not that the users lack history."""
    from recsys.errors import ValidationFailed
    from recsys.evaluation import evaluate_store
    from recsys.evaluation.splits import user_part

    users = [u for u in (f"shopper{i}" for i in range(50)) if user_part(u) == "train"][:3]
    ev = frame([(u, f"i{d}", f"2024-01-0{d + 1}") for u in users for d in range(4)])
    with pytest.raises(ValidationFailed, match=r"3 eligible user\(s\), none in part 'test'.*`--part all`"):
        evaluate_store(ev, make_ours=None, item_ids=[f"i{d}" for d in range(4)], vectors=None, k=5)
    assert evaluate_store(ev, make_ours=None, item_ids=[f"i{d}" for d in range(4)], vectors=None, k=5,
                          part=None)["users"] == 3


def test_lists_holding_half_the_catalogue_or_more_carry_a_caution() -> None:
    """On a 12-item store `recsys evaluate` printed recall@20 1.0 and baseline gaps, with nothing saying k covered
    the whole catalogue: recall is 1 by construction there."""
    split = temporal_split(EVENTS, "hm")
    ours = fixed({"u1": ["x", "new"], "u2": ["a", "y"]})
    assert "caution" not in run_evaluation(split, {"ours": ours}, k=2, catalogue_size=10)
    said = run_evaluation(split, {"ours": ours}, k=2, catalogue_size=4)["caution"]
    assert said.startswith("k=2 lists 2 of the 4 items") and "--k 1" in said
