"""What a benchmark run leaves and says (the benchmark review's fixes): children get a database URL only when one is
given; a database that already holds a store is refused before a demo is imported into it; a run that measures
only part of a result keeps the saved parts, marked as carried over; a generated demo is removed; a run that would
measure nothing, or a bad input, is one line and a non-zero exit, with nothing created or loaded first; no NaN in
an answer; the index results' note says how its runs were timed.

Fakes throughout (monkeypatched subprocess, stand-in stores and modules, marker homes): no demo is built here."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tests.bench.test_bench_homes import built
from tests.bench.test_bench_protocol import BENCH, HOST, _load


@pytest.fixture(autouse=True)
def no_database_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from recsys.config import get_settings

    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _exit(main: Any, monkeypatch: pytest.MonkeyPatch, *argv: str) -> SystemExit:
    monkeypatch.setattr(sys, "argv", list(argv))
    with pytest.raises(SystemExit) as e:
        main()
    return e.value


def _one_line(e: SystemExit, *parts: str) -> str:
    msg = str(e.code)
    assert e.code not in (0, None) and "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg
    return msg


# -- api_load.py: the database URL, a database already used, wrk ------------------------------------------------------

def test_api_load_children_get_a_database_url_only_when_one_is_given(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("api_load")
    seen: list[dict[str, str]] = []

    def child(cmd: list[str], env: dict[str, str], **kw: Any) -> Any:
        seen.append(env)
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(mod.subprocess, "run", child)
    monkeypatch.setattr(mod.subprocess, "Popen", child)
    monkeypatch.setenv("RECSYS_DATABASE_URL", "postgresql+psycopg://someone@elsewhere/other")  # the shell's
    mod.prepare_home(home := tmp_path / "home", 10, 5, "")
    mod.start_server(home, 1, tmp_path / "server.log", "")
    assert [e.get("RECSYS_DATABASE_URL", "left out") for e in seen] == ["left out", "left out"]  # was "": refused
    assert all(e["RECSYS_HOME"] == str(home) for e in seen) and seen[1]["RECSYS_API__AUTH"] == "false"
    seen.clear()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    mod.prepare_home(home, 10, 5, url)
    mod.start_server(home, 1, tmp_path / "server.log", url)
    assert [e["RECSYS_DATABASE_URL"] for e in seen] == [url, url]


def test_api_load_says_in_one_line_when_the_demo_build_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("api_load")
    monkeypatch.setattr(mod.subprocess, "run", lambda *a, **kw: SimpleNamespace(returncode=2))
    with pytest.raises(SystemExit) as e:
        mod.prepare_home(tmp_path / "home", 10, 5, "")
    _one_line(e.value, "recsys demo", "(2)")  # was a CalledProcessError traceback


def _database(path: Path, items: int, events: int) -> str:
    with sqlite3.connect(path) as c:
        for table, n in (("items", items), ("events", events)):
            c.execute(f"CREATE TABLE {table} (id INTEGER)")
            c.executemany(f"INSERT INTO {table} VALUES (?)", [(i,) for i in range(n)])
    return f"sqlite:///{path}"


def test_api_load_refuses_a_database_that_holds_a_store_before_building_a_demo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("api_load")
    monkeypatch.setattr(mod, "prepare_home", lambda *a: pytest.fail("a demo was built into a used database"))
    monkeypatch.setattr(mod, "start_server", lambda *a: pytest.fail("a server was started"))
    db = tmp_path / "used.db"
    e = _exit(mod.main, monkeypatch, "api_load.py", "--database-url", _database(db, 3, 2))
    msg = _one_line(e, f"database '{db}' already holds a store this run did not make (3 items, 2 events",
                    f"remove {db}")
    assert "recsys-api-load-" not in msg  # names the database, not the demo's temporary home
    args = SimpleNamespace(client="httpx", home=None, database_url=_database(tmp_path / "tables.db", 0, 0))
    mod.check_inputs(args)  # migrated but empty: the demo goes in
    mod.check_inputs(SimpleNamespace(client="httpx", home=None, database_url=f"sqlite:///{tmp_path / 'new.db'}"))
    assert not (tmp_path / "new.db").exists()  # a new SQLite file is not created by the check
    args.database_url = "postgresql+psycopg://nobody@127.0.0.1:9/benchdb"
    homes = sys.modules["_homes"]
    with pytest.raises(homes.InputError, match=r"--database-url postgresql\+psycopg://nobody@127.0.0.1:9/benchdb: "
                                               r"database 'benchdb' cannot be read \("):
        mod.check_inputs(args)


def test_api_load_refuses_wrk_that_is_not_installed_before_starting_a_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("api_load")
    monkeypatch.setattr(mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(mod, "start_server", lambda *a: pytest.fail("a server was started"))
    e = _exit(mod.main, monkeypatch, "api_load.py", "--client", "wrk", "--home", str(built(tmp_path / "home")))
    _one_line(e, "--client wrk: wrk is not installed")


# -- run_all.py: parts a run did not measure are carried over; nothing measured is a failure -------------------------

def _bench(run_all: ModuleType, out: Path, name: str, answer: dict[str, Any]) -> Any:
    b = next(b for b in run_all.benches(out, quick=False) if b.name == name)
    return dataclasses.replace(b, argv=[sys.executable, "-c", f"print({json.dumps(json.dumps(answer))})"], env={})


def test_a_run_without_the_hm_part_keeps_the_saved_one_and_says_from_when(tmp_path: Path) -> None:
    run_all, summary = _load("run_all"), _load("summary")
    speed = {"runtimes": {"onnx": {"image_speedup_vs_torch": 4.7, "text_speedup_vs_torch": 2.4}}}
    hm = {"runtimes": {"onnx": {"delta_vs_torch": {"text_to_image_recall@10": -0.007}}}}
    path = tmp_path / "onnx_towers.json"
    path.write_text(json.dumps({"encoder": "e", "speed": speed, "hm": hm, "measured_at": "2026-12-04T14:25:39Z"}))
    assert run_all.run(_bench(run_all, tmp_path, "onnx_towers", {"encoder": "e", "speed": speed}), tmp_path,
                       HOST).startswith("ok")
    saved = json.loads(path.read_text())
    assert saved["hm"] == hm and saved["measured_at"] != "2026-12-04T14:25:39Z"  # was: the hm part dropped
    assert saved["carried_over"] == {"hm": {"measured_at": "2026-12-04T14:25:39Z", "measured_on": None,
                                            "not_measured_now": "not in this run's answer"}}
    run_all.run(_bench(run_all, tmp_path, "onnx_towers", {"encoder": "e", "speed": speed}), tmp_path, HOST)
    assert json.loads(path.read_text())["carried_over"]["hm"]["measured_at"] == "2026-12-04T14:25:39Z"  # its own date
    [row] = summary.rows_for(path)
    assert row.measured.endswith("; hm part from 2026-12-04 14:25") and "-0.007" in row.ratios
    hm2 = {"runtimes": {"onnx": {"delta_vs_torch": {"text_to_image_recall@10": 0.001}}}}
    run_all.run(_bench(run_all, tmp_path, "onnx_towers", {"encoder": "e", "speed": speed, "hm": hm2}), tmp_path, HOST)
    saved = json.loads(path.read_text())
    assert saved["hm"] == hm2 and "carried_over" not in saved


def test_a_run_that_skipped_postgresql_keeps_the_saved_postgresql_figures(tmp_path: Path) -> None:
    run_all = _load("run_all")
    sqlite, pg = {"items_rows_per_s": 11730}, {"items_rows_per_s": 7570, "items_speedup_vs_orm": 2.3}
    path = tmp_path / "import_speed.json"
    skipped = {"skipped": "PostgreSQL unavailable: connection refused"}
    run_all.run(_bench(run_all, tmp_path, "import_speed", {"sqlite": sqlite, "postgresql": skipped}), tmp_path, HOST)
    assert json.loads(path.read_text())["postgresql"] == skipped  # nothing saved to keep: the skip is the answer
    path.write_text(json.dumps({"sqlite": sqlite, "postgresql": pg, "measured_at": "2026-11-23", "measured_on": HOST}))
    run_all.run(_bench(run_all, tmp_path, "import_speed", {"sqlite": {"items_rows_per_s": 1}, "postgresql": skipped}),
                tmp_path, HOST)
    saved = json.loads(path.read_text())
    assert saved["sqlite"] == {"items_rows_per_s": 1} and saved["postgresql"] == pg
    assert saved["carried_over"]["postgresql"] == {"measured_at": "2026-11-23", "measured_on": HOST,
                                                   "not_measured_now": skipped["skipped"]}


def test_a_run_that_measured_nothing_fails(tmp_path: Path) -> None:
    run_all = _load("run_all")
    status = run_all.run(_bench(run_all, tmp_path, "encoders", {"encoder": "e", "towers": "t", "torch": "2"}),
                         tmp_path, HOST)
    assert status.startswith("error: nothing was measured")  # was "ok in ... s"
    assert "nothing was measured" in json.loads((tmp_path / "encoders.failed.json").read_text())["error"]
    assert not list(tmp_path.glob("encoders_*.json"))


# -- encoders.py / onnx_towers.py / import_speed.py: their data checked first ----------------------------------------

def _hm(root: Path, *, articles: bool = True, images: bool = True) -> Path:
    root.mkdir(parents=True)
    if articles:
        (root / "articles.csv").write_text("article_id,prod_name\n")
    if images:
        (root / "images" / "010").mkdir(parents=True)
        (root / "images" / "010" / "0100000001.jpg").write_bytes(b"")
    return root


def test_encoders_without_its_data_exits_with_one_line_before_loading(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("encoders")
    monkeypatch.setattr(mod, "get_encoder", lambda *a, **kw: pytest.fail("the encoder was loaded"))
    main, home = mod.main, str(tmp_path / "home")
    nohm = str(tmp_path / "nohm")
    _one_line(_exit(main, monkeypatch, "encoders.py", "--data", nohm, "--home", home), "no images under",
              "articles.csv", "--skip-throughput or --skip-quality")
    _one_line(_exit(main, monkeypatch, "encoders.py", "--data", nohm, "--skip-quality"), "no images under")
    images = str(_hm(tmp_path / "images_only", articles=False))
    msg = _one_line(_exit(main, monkeypatch, "encoders.py", "--data", images), "articles.csv", "--skip-quality")
    assert "no images" not in msg
    _one_line(_exit(main, monkeypatch, "encoders.py", "--skip-quality", "--skip-throughput"), "nothing to measure")
    assert not (tmp_path / "home").exists()


def test_onnx_towers_checks_its_data_and_features_before_the_export(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("onnx_towers")
    monkeypatch.setattr(mod, "load_towers", lambda *a: SimpleNamespace(id="org/towers"))
    monkeypatch.setattr(mod, "OnnxTowers", lambda *a, **kw: pytest.fail("the towers were exported"))
    home = str(tmp_path / "home")
    nohm = tmp_path / "nohm"
    _one_line(_exit(mod.main, monkeypatch, "onnx_towers.py", "--data", str(nohm), "--home", home, "--skip-quality"),
              f"--data {nohm}: no {nohm / 'articles.csv'}")
    no_images = _hm(tmp_path / "no_images", images=False)
    _one_line(_exit(mod.main, monkeypatch, "onnx_towers.py", "--data", str(no_images), "--home", home,
                    "--skip-quality"), "no images under")
    data, feats = _hm(tmp_path / "hm"), tmp_path / "typo"
    _one_line(_exit(mod.main, monkeypatch, "onnx_towers.py", "--data", str(data), "--home", home,
                    "--features-from", str(feats)),
              f"--features-from {feats}: no {feats / 'cache' / 'features' / 'org_towers' / 'image.db'}",
              "--skip-quality")
    _one_line(_exit(mod.main, monkeypatch, "onnx_towers.py", "--data", str(data), "--home", home,
                    "--features-from", str(feats), "--int8-refit"), "--features-from")


def test_import_speed_without_data_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    mod = _load("import_speed")
    monkeypatch.setattr(mod, "measure", lambda *a: pytest.fail("measured without data"))
    e = _exit(mod.main, monkeypatch, "import_speed.py", "--data", str(tmp_path / "nohm"), "--sqlite-only")
    _one_line(e, f"--data {tmp_path / 'nohm'}", "articles.csv", "transactions.csv")  # was exit 0 with "skipped"
    assert capsys.readouterr().out == ""


# -- index.py, itemknn_peer.py, live_stats.py, withheld_anatomy.py: bad inputs ----------------------------------------

@pytest.mark.parametrize("flag", ["--sizes", "--nq"])
def test_index_refuses_zero_in_its_arguments(flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the module sets it: undone after the test
    mod = _load("index")
    monkeypatch.setattr(mod, "run", lambda *a: pytest.fail("a run started"))
    e = _exit(mod.main, monkeypatch, "index.py", flag, "0", "--out", str(tmp_path / "index.json"))
    assert e.code == 2 and "0 is not a positive count" in capsys.readouterr().err
    assert not (tmp_path / "index.json").exists()


def test_itemknn_peer_without_its_data_exits_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("itemknn_peer")
    typo = tmp_path / "typo"
    _one_line(_exit(mod.main, monkeypatch, "itemknn_peer.py", "--data-root", str(typo)),
              f"--data-root {typo}: no {typo / 'hm' / 'transactions.csv'}")


@pytest.mark.parametrize("script", ["live_stats", "withheld_anatomy"])
def test_a_missing_test_events_file_is_one_line_before_the_store_opens(script: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RECSYS_RANKING__LIVE_STATS_S", "RECSYS_RANKING__LIVE_STATS_PAIRS"):
        monkeypatch.setenv(name, "")  # live_stats sets them when loaded: undone after the test
    mod = _load(script)
    monkeypatch.setattr(mod, "Recommender", lambda *a: pytest.fail("the store was loaded"))
    monkeypatch.setattr(mod, "open_store", lambda *a: pytest.fail("the store was opened"))
    monkeypatch.setenv("RECSYS_HOME", str(built(tmp_path / "home")))
    missing = tmp_path / "withheld_u.data"
    _one_line(_exit(mod.main, monkeypatch, f"{script}.py", str(missing)), f"test events {missing}: no such file")


# -- miss_path.py: the generated demo is removed -------------------------------------------------------------------

def test_miss_path_removes_the_demo_it_generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    mod = _load("miss_path")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    homes: list[Path] = []

    def demo(cmd: list[str], env: dict[str, str], **kw: Any) -> Any:
        home = Path(env["RECSYS_HOME"])
        home.mkdir(parents=True)
        (home / "recsys.db").write_bytes(b"\0" * 4096)
        homes.append(home)
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(subprocess, "run", demo)
    monkeypatch.setattr(mod, "measure", lambda home, args: {"bench": "miss_path", "home": str(home), "items": 2000},
                        raising=False)
    monkeypatch.setattr(sys, "argv", ["miss_path.py"])
    mod.main()
    out = json.loads(capsys.readouterr().out)
    assert homes and not homes[0].exists() and not list(tmp_path.iterdir())  # was ~190 MB left in $TMPDIR
    assert out["items"] == 2000 and "removed" in out["home"]
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: SimpleNamespace(returncode=2))
    _one_line(_exit(mod.main, monkeypatch, "miss_path.py"), "recsys demo", "(2)")
    assert not list(tmp_path.iterdir())


# -- simulate_feedback.py: --home checked, the worse variant tested at --alpha --------------------------------------

def test_simulate_feedback_checks_its_home_before_opening_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.service

    mod = _load("simulate_feedback")
    monkeypatch.setattr(recsys.service, "Recommender", lambda *a, **kw: pytest.fail("a store was opened"))
    typo = tmp_path / "typo"
    e = _exit(mod.main, monkeypatch, "simulate_feedback.py", "--home", str(typo))
    _one_line(e, f"--home {typo}: not a built recsys store", "recsys build")
    assert not typo.exists()  # was: recsys.db, its lock and secrets/ created there


def test_simulate_feedback_finds_the_worse_variant_at_its_alpha(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import recsys.service

    mod = _load("simulate_feedback")
    rec = SimpleNamespace(store=SimpleNamespace(dispose=lambda: None))
    monkeypatch.setattr(recsys.service, "Recommender", lambda *a, **kw: rec)
    monkeypatch.setattr(mod, "taste", lambda *a: ({}, {}))
    monkeypatch.setattr(mod, "run_experiment", lambda *a: {"counts_match": True})
    monkeypatch.setattr(mod, "resplit_p_values", lambda *a: [(0.5, 0.5)])
    monkeypatch.setattr(mod, "summary", lambda r: {"counts_match": True, "variants": {
        "popular": {"p_value": 0.03}, "b": {"p_value": 0.5, "p_value_unclustered": 0.5}}})
    home = str(built(tmp_path / "home"))
    for alpha, found in (("0.05", True), ("0.01", False)):  # was: always against 0.01
        monkeypatch.setattr(sys, "argv", ["simulate_feedback.py", "--home", home, "--aa-runs", "1", "--alpha", alpha])
        mod.main()
        ab = json.loads(capsys.readouterr().out)["ab"]
        assert ab["worse_detected"] is found and ab["alpha"] == float(alpha)


# -- lexical.py: a store with nothing to measure, never NaN ------------------------------------------------------------

class _Store:
    def __init__(self, url: str) -> None:
        self.url = url

    @contextmanager
    def reading(self) -> Iterator[None]:
        yield None

    @contextmanager
    def session(self) -> Iterator[None]:
        yield None


def test_lexical_on_a_store_with_nothing_to_measure_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    mod = _load("lexical")
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Red dress", "Blue shirt"], "attributes": [{}, {}]})
    index = SimpleNamespace(item_ids=["1", "2"], manifest=SimpleNamespace(encoder_id="e"))
    monkeypatch.setattr(mod, "Store", _Store)
    monkeypatch.setattr(mod, "available", lambda c: True)
    monkeypatch.setattr(mod, "items_frame", lambda s: items)
    monkeypatch.setattr(mod, "Recommender", lambda *a, **kw: SimpleNamespace(
        index=index, search_text=lambda *a, **kw: pytest.fail("searched a store with nothing to measure")))
    home = built(tmp_path / "demo")
    monkeypatch.setenv("BENCH_HM_HOME", str(home))
    e = _exit(mod.main, monkeypatch, "lexical.py")
    _one_line(e, f"BENCH_HM_HOME {home}: nothing to measure", "no rare title words", "no colour + type pair")
    assert capsys.readouterr().out == ""  # was a line with NaN, exit 0
    measured = mod._measure(lambda q, k: [], [], [], [], {}, {})
    assert measured["rare_word_recall_at_20"] is None
    json.dumps(measured, allow_nan=False)


# -- index.json: its note says how its runs timed exact search ---------------------------------------------------------

def test_the_saved_index_note_describes_how_its_runs_were_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    mod = _load("index")
    saved = json.loads((BENCH / "results" / "index.json").read_text())
    assert saved["qps_note"] == mod.QPS_NOTE  # what every merge writes, so it stays true of the older runs
    older = [r for r in saved["runs"] if r.get("mode") != "streamed" and "timing" not in (r.get("exact") or {})]
    if older:
        assert "without exact.timing" in saved["qps_note"] and "best of 2 batched and once" in saved["qps_note"]
    assert "exact and IVF-PQ: best of 3" not in saved["qps_note"]


# -- withheld.py: this environment's CLI; its file ends with a newline ---------------------------------------------

def test_withheld_runs_this_environments_cli_and_ends_its_file_with_a_newline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    mod = _load("withheld")
    (tmp_path / "data" / "ml100k").mkdir(parents=True)
    (tmp_path / "data" / "ml100k" / "u.data").write_text("1\t1\t5\t881250949\n2\t1\t4\t881250950\n")
    calls: list[list[str]] = []

    def cli(cmd: list[str], **kw: Any) -> Any:
        calls.append(cmd)
        out = json.dumps({"k": 20, "metrics": {"recall": 0.1}}) if "evaluate" in cmd else ""
        return SimpleNamespace(returncode=0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(mod.subprocess, "run", cli)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setattr(sys, "argv", ["withheld.py", "--dataset", "ml100k", "--data-root", str(tmp_path / "data"),
                                      "--scratch", str(tmp_path / "scratch"), "--out", str(tmp_path / "out")])
    mod.main()
    assert [c[0] for c in calls] == [str(tmp_path / "venv" / "bin" / "recsys")] * 3  # was ROOT/.venv/bin/recsys
    assert (tmp_path / "out" / "withheld_ml100k_validation.json").read_text().endswith("}\n")
    assert json.loads(capsys.readouterr().out)["metrics"] == {"recall": 0.1}
