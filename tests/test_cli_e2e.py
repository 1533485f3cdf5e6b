"""The command contracts of DESIGN.md section 4 on the shared built demo, through the Typer app in-process:
`stats`, `search text`, `similar`, `recommend`, `evaluate --json` (stored split and `--test-events`, run twice),
and the same ranking from `evaluate` and the HTTP API for the same user and time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recsys.cli import _register_commands, app
from recsys.config import get_settings
from tests.e2e_fixture import built_demo, private_home

pytestmark = pytest.mark.slow
if not any(c.name == "evaluate" for c in app.registered_commands):
    _register_commands()  # what `main()` does before running the app


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    src, _ = built_demo(tmp_path_factory)
    dst = private_home(src, tmp_path_factory.mktemp("cli") / "home")
    mp = pytest.MonkeyPatch()
    mp.setenv("RECSYS_HOME", str(dst))
    mp.setenv("RECSYS_API__AUTH", "false")
    get_settings.cache_clear()
    yield dst
    mp.undo()
    get_settings.cache_clear()


def run(*args: str) -> Any:
    res = CliRunner().invoke(app, [*args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_query_commands_print_json_lists(home: Path) -> None:
    stats = run("stats", "--json")
    assert stats["items"] > 0 and stats["events"] > 0 and stats["users"] > 0
    hits = run("search", "text", "red shoes", "--k", "5", "--json")
    assert 0 < len(hits) <= 5 and {"item_id", "score"} <= set(hits[0])
    sim = run("similar", hits[0]["item_id"], "--k", "5", "--json")
    assert hits[0]["item_id"] not in [h["item_id"] for h in sim]
    recs = run("recommend", "user-0001", "--k", "5", "--explain", "--json")
    assert len(recs) == 5 and all(r["sources"] for r in recs) and "explanation" in recs[0]
    early = run("recommend", "user-0001", "--k", "5", "--now", "2026-01-02T00:00:00", "--json")
    assert len(early) == 5  # a day into the data: k items all the same
    blank = CliRunner().invoke(app, ["recommend", ""])  # the API's path refuses it; it served trending
    assert blank.exit_code == 2 and "is not a user id" in blank.output
    stranger = CliRunner().invoke(app, ["recommend", "nobody-at-all", "--k", "3", "--json"])
    assert len(json.loads(stranger.stdout)) == 3 and "'nobody-at-all' has no stored events" in stranger.stderr
    assert "no stored events" not in CliRunner().invoke(app, ["recommend", "user-0001", "--k", "3"]).output
    misspelt = CliRunner().invoke(app, ["recommend", "user-001", "--k", "3"])  # the explorer's suggestion, here too
    assert "'user-001' has no stored events (did you mean 'user-0001'" in " ".join(misspelt.stderr.split())
    typo = CliRunner().invoke(app, ["recommend", "user-0001", "--filter", "category=hats"])
    assert typo.exit_code == 2 and "no item has the category 'hats'" in typo.output and "hat" in typo.output
    nobody = CliRunner().invoke(app, ["recommend", "nobody-at-all", "--buy-again"])
    assert nobody.exit_code == 0 and "'nobody-at-all' has no stored events" in nobody.output
    before = CliRunner().invoke(app, ["recommend", "user-0001", "--now", "2026-01-01T00:00:01"])
    assert before.exit_code != 0 and "before the first event the ranker knows" in str(before.exception)
    assert CliRunner().invoke(app, ["recommend", "user-0001", "--now", "yesterday"]).exit_code == 2
    ruled = CliRunner().invoke(app, ["recommend", "user-0001", "--k", "3", "--pin", "no-such-item=1", "--boost",
                                     "category:HAT=1", "--bury", "category:hatz"])
    assert ruled.exit_code == 0 and "no item or category matches 'category:hatz', 'no-such-item'" in ruled.stderr


def test_query_tables_without_json_show_titles(home: Path) -> None:
    res = CliRunner().invoke(app, ["recommend", "user-0001", "--k", "3"])
    assert res.exit_code == 0, res.output
    header, *lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert header.split()[:3] == ["#", "item", "title"]
    assert len(lines) == 3 and lines[0].lstrip().startswith("1.") and "[" not in res.stdout  # a table, no JSON
    item = json.loads(CliRunner().invoke(app, ["recommend", "user-0001", "--k", "3", "--json"]).stdout)[0]
    assert item["item_id"] in lines[0]
    explained = CliRunner().invoke(app, ["recommend", "user-0001", "--k", "3", "--explain"]).stdout.splitlines()[1:]
    assert len(explained) == 6, explained  # each row with its reason beneath: --explain said nothing in a table
    assert all(ln.lstrip().startswith(("repeat: your ", "like ", "popular")) for ln in explained[1::2]), explained
    again = CliRunner().invoke(app, ["recommend", "user-0001", "--buy-again", "--k", "2", "--json"])
    assert again.exit_code == 0 and len(json.loads(again.stdout.strip().splitlines()[-1])) <= 2


def test_query_from_a_directory_without_a_store_creates_nothing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "elsewhere"))
    get_settings.cache_clear()
    try:
        for args in (["recommend", "user-0001"], ["stats"], ["keys", "list"],
                     ["feedback", "report"], ["items", "show", "i1"], ["build"], ["db", "current"]):
            res = CliRunner().invoke(app, args)
            assert res.exit_code != 0 and "no recsys store at" in str(res.exception) + res.output, args
    finally:
        get_settings.cache_clear()
    assert not (tmp_path / "elsewhere").exists()


def test_shell_answers_many_queries_from_one_warm_recommender(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli import pipeline

    made = []
    real = pipeline._new_recommender
    monkeypatch.setattr(pipeline, "_new_recommender", lambda: made.append(1) or real())
    lines = ["recommend user-0001 --k 2 --json", "search text women's dress", "# a comment line",
             "recommend user-0001 --no-such-flag",
             "recommend no-such-user-anywhere --k 2 --json", "similar no-such-item --json", "stats --json", "quit",
             "stats --json"]
    res = CliRunner().invoke(app, ["shell"], input="\n".join(lines) + "\n")
    # a script piped in: its status (the unreadable line counts as failed too)
    assert res.exit_code == 1 and "3 command(s) failed" in res.output, res.output
    outs = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith(("[", "{"))]
    assert len(outs) == 3 and len(outs[0]) == 2 and len(outs[1]) == 2 and "items" in outs[2]  # nothing after quit
    assert made == [1]  # one recommender for every query
    assert "unknown_item" in res.output  # an error answers the line, the shell goes on
    assert "cannot read that line (No closing quotation)" in res.output  # an open apostrophe too


def test_shell_serves_what_a_build_typed_in_it_published(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm recommender picks up new generations between commands: after `build` in the shell it said a new
    item was "not indexed yet; run `recsys build`\"."""
    src, _ = built_demo(tmp_path_factory)
    monkeypatch.setenv("RECSYS_HOME", str(private_home(src, tmp_path / "home")))
    (tmp_path / "new.jsonl").write_text(json.dumps({"item_id": "zz-new-1", "title": "red summer dress",
                                                    "category": "dress"}) + "\n")
    lines = ["similar item-00001 --k 2 --json", f"import items {tmp_path / 'new.jsonl'}", "build",
             "similar zz-new-1 --k 2 --json", "help similar"]
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["shell"], input="\n".join(lines) + "\n")
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0 and "not indexed" not in res.output, res.output
    assert len([ln for ln in res.stdout.splitlines() if ln.startswith("[")]) == 2
    assert "Usage: recsys similar" in res.output  # `help similar` is that command's help


def test_evaluate_json_contract(home: Path) -> None:
    out = CliRunner().invoke(app, ["evaluate", "--k", "10", "--part", "all"])  # the summary on stderr, JSON on stdout
    assert out.exit_code == 0, out.output
    assert "slices (recall): " in out.stderr and "new_to_user" in out.stderr and "95% interval [" in out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["users"] > 0 and {"recall", "ndcg", "hit_rate", "mrr", "coverage"} <= set(res["metrics"])
    assert {"popular", "item_cooccurrence", "content_knn", "content_peer"} <= set(res["baselines"])
    assert {"cold_items", "cold_users", "new_to_user", "repeats"} <= set(res["slices"])
    assert "recall" in res["slices"]["new_to_user"]
    iv = res["intervals"]
    assert iv["main"][0] <= res["metrics"]["recall"] <= iv["main"][1]
    assert set(iv["differences"]) >= {"popular", "content_peer"}


def _withheld_file(path: Path, prefix: str = "new", days: int = 3) -> Path:
    """Three new shoppers in H&M's transactions layout, buying demo items over three days each."""
    rows = ["t_dat,customer_id,article_id,price,sales_channel_id"]
    for u in range(3):
        for d in range(days):
            for j in range(2):
                rows.append(f"2026-02-0{d + 1},{prefix}-{u},item-{(u * 7 + d * 3 + j) % 150 + 1:05d},0.01,2")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_test_events_rerun_and_no_training_leak(home: Path, tmp_path: Path) -> None:
    from recsys.service import Recommender
    from recsys.store.queries import evaluation_users, user_event_records

    f = _withheld_file(tmp_path / "transactions.csv")
    first = run("evaluate", "--test-events", str(f), "--format", "hm", "--k", "10", "--json")
    assert first["users"] == 3 and first["replayed"].get("stored") == 3 * 2 * 2
    # what training reads did not change: the next build keeps its ranker (it retrained for minutes before)
    assert str(Recommender(get_settings()).jobs.build()["train"]).startswith("skipped (no new events"), "retrained"
    again = run("evaluate", "--test-events", str(f), "--format", "hm", "--k", "10", "--json")
    assert again["users"] == 3 and again["metrics"] == first["metrics"]  # nothing stored twice, same answers
    rec = Recommender(get_settings())
    with rec.store.session() as s:
        assert evaluation_users(s) == {"new-0", "new-1", "new-2"}
    stats = run("stats", "--json")  # the shop's events; the replayed shoppers' counted apart, and never trained on
    assert stats["evaluation_replays"] == {"users": 3, "events": 12} and rec.jobs.train()["events"] == stats["events"]
    # the same ids with a day less: the earlier run's events (this run's targets among them) are not their history
    shorter = run("evaluate", "--test-events", str(_withheld_file(tmp_path / "short.csv", days=2)), "--format", "hm",
                  "--k", "10", "--json")
    fresh = run("evaluate", "--test-events", str(_withheld_file(tmp_path / "fresh.csv", "other", days=2)),
                "--format", "hm", "--k", "10", "--json")
    assert shorter["replayed"] == fresh["replayed"] == {"stored": 3 * 2}
    assert shorter["metrics"] == fresh["metrics"]
    with rec.store.reading() as c:
        assert len(user_event_records(c, "new-0")) == 2  # this file's history alone


def test_replayed_shoppers_own_events_count_in_their_statistics(home: Path, tmp_path: Path) -> None:
    """Training counts each shopper's own earlier purchases in popularity and first sale; a replayed shopper (never
    in the training's statistics) gets theirs counted per request, so their own purchases do not look never sold,
    while a trained shopper's are not counted twice."""
    import pandas as pd

    from recsys.ranking.context import make_context
    from recsys.service import Recommender
    from recsys.serving.requests import history_as_of
    from recsys.store.queries import user_event_records

    f = _withheld_file(tmp_path / "transactions.csv", prefix="fresh")
    rec = Recommender(get_settings())
    rec.jobs.evaluate(10, test_events=f, fmt="hm")
    ranker = rec.ranker
    stats = ranker.stats
    assert stats.uncounted_from("fresh-0") == -np.inf and stats.uncounted_from("user-0002") > stats.end_ts
    with rec.store.reading() as c:
        records = user_event_records(c, "fresh-0")
    now = float(pd.Timestamp("2026-02-03").value / 86_400e9)
    hist, now = history_as_of(records, ranker.table, now, cut=True)
    plain = make_context(hist, now, stats, ranker.params)
    hist.uncounted_from = stats.uncounted_from("fresh-0")
    own = make_context(hist, now, stats, ranker.params)
    rows, bought = np.unique(hist.rows, return_counts=True)
    assert len(hist) == 4 and (own.pop[rows] - plain.pop[rows] == bought).all()
    assert (own.first_ts[rows] <= hist.ts.max()).all()


def test_api_and_evaluate_rank_alike(home: Path) -> None:
    """The API at an explicit time gives the list `evaluate` computes for that user and time."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from recsys.api import create_app
    from recsys.service import Recommender

    rec = Recommender(get_settings())
    when = pd.Timestamp("2026-01-01T12:00:00")
    direct = [r.item_id for r in rec.recommend("user-0002", 10, now=when.to_pydatetime(), fresh=True)]
    with TestClient(create_app(get_settings())) as client:
        r = client.get("/v1/users/user-0002/recommendations", params={"k": 10, "now": when.isoformat()})
        assert r.status_code == 200, r.text
        assert [x["item_id"] for x in r.json()["items"]] == direct
        later = client.get("/v1/users/user-0002/recommendations", params={"k": 10}).json()["items"]
    assert later  # the clock's own time also answers


def test_cli_ranks_with_the_servers_compute_threads(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several BLAS threads sum matrix products in another order than one: `recsys recommend` (numpy's default
    threads) and the server (api.compute_threads, 1) gave other lists for the same request. Each ranking command
    now runs under the server's cap, restored afterwards."""
    from threadpoolctl import threadpool_info

    from recsys.serving import threads

    seen: list[dict[str, int]] = []
    real = threads.as_served

    def recording(n: int) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def cm() -> Iterator[None]:
            with real(n):
                import torch  # a text search loads torch inside the call: capped beforehand too

                seen.append({i["internal_api"]: i["num_threads"] for i in threadpool_info()}
                            | {"torch": torch.get_num_threads()})
                yield
        return cm()

    monkeypatch.setattr(threads, "as_served", recording)
    before = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
    for args in (["recommend", "user-0001", "--k", "3"], ["recommend", "user-0001", "--buy-again"],
                 ["similar", "item-00001", "--k", "3"], ["search", "text", "dress", "--k", "3"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    assert len(seen) == 4 and all(set(s.values()) == {1} for s in seen), seen
    assert {i["internal_api"]: i["num_threads"] for i in threadpool_info()} == before  # restored
