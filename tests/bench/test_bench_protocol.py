"""The benchmark scripts keep the evaluation's protocol and run_all's contract (bench/*.py, notebook 03).

The co-purchase space is cut at the split's earliest target everywhere a ranker is fitted on a split; the side studies
count cold and new-to-user targets as the evaluator does; a failure of our own model fails the quality benchmark;
quick runs write into their own folder; the summary's rows say which run they are."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from argparse import Namespace
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation import Batch, temporal_split

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
HOST = {"cpu": "Test CPU", "cores": 2, "ram_gb": 8.0, "os": "Linux", "python": "3.11"}


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import their siblings by name
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _fits(tree: ast.AST, owner: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "fit" and isinstance(n.func.value, ast.Name) and n.func.value.id == owner]


def test_every_ranker_fitted_on_a_split_cuts_its_cobuy_space_at_the_earliest_target() -> None:
    sources = {p.name: p.read_text() for p in BENCH.glob("*.py")}
    book = json.loads((ROOT / "notebooks" / "03_evaluation.ipynb").read_text())
    sources["03_evaluation.ipynb"] = "\n".join("".join(c["source"]) for c in book["cells"] if c["cell_type"] == "code")
    fits = {name: _fits(ast.parse(src), "RankingPipeline") for name, src in sources.items()}
    assert {name for name, calls in fits.items() if calls} >= {"quality.py", "diversity.py", "reach.py",
                                                               "03_evaluation.ipynb"}
    for name, calls in fits.items():
        for call in calls:
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            assert kw.get("cobuy_before") == "split.earliest_target", f"{name}:{call.lineno}"
    [space] = _fits(ast.parse(sources["cobuy_space.py"]), "CobuyProjection")  # fitted apart from the pipeline
    assert "fit_events" in ast.unparse(space.args[1]) and "split.train_before_targets()" in sources["cobuy_space.py"]


def test_side_studies_count_cold_and_new_targets_as_the_evaluator_does() -> None:
    from recsys.evaluation.experiment import _history_targets, _slice_targets

    ev = pd.DataFrame([("u", "a", "purchase", "2024-01-01"), ("u", "x", "dislike", "2024-01-02"),
                       ("u", "NEW", "purchase", "2024-01-10"), ("u", "x", "purchase", "2024-01-10"),
                       ("u", "a", "purchase", "2024-01-10"),
                       ("w", "a", "purchase", "2024-01-02"), ("w", "x", "purchase", "2024-01-03"),
                       ("w", "NEW", "purchase", "2024-01-20")], columns=["user_id", "item_id", "type", "ts"])
    split = temporal_split(ev.assign(value=None), "hm")
    split.users = ["u"]  # w only as another shopper: their purchase of NEW after u's day must not warm it
    later = pd.DataFrame({"user_id": ["w"], "item_id": ["NEW"], "type": ["purchase"], "value": [None],
                          "ts": [pd.Timestamp("2024-01-20")]})
    split.train = pd.concat([split.train, later], ignore_index=True)
    got = _load("reach").target_slices(split)
    cold, _, _ = _slice_targets(split)
    new, _, _ = _history_targets(split, seen_before=False)
    assert got["u"]["cold_items"] == cold[0] == ["NEW"]
    assert got["u"]["new_to_user"] == new[0] == ["NEW", "x"]  # a disliked item is new once bought


def _run_args(tmp_path: Path) -> Namespace:
    return Namespace(data_root=tmp_path, scratch=tmp_path, part="all", max_users=None, seed=0, vectors_home={},
                     embed=False, image_fallback=False, k=5, skip={"implicit_bpr", "cornac_vbpr"})


@pytest.fixture
def quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/quality.py over a three-shopper store, vectors given: nothing imported or embedded."""
    q = _load("quality")
    ev = pd.DataFrame([(u, i, "purchase", 1.0, pd.Timestamp(d)) for u in "abc"
                       for i, d in (("x", "2024-01-01"), ("y", "2024-01-02"), ("z", "2024-01-03"))],
                      columns=["user_id", "item_id", "type", "value", "ts"])
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "hidden": False, "deleted": False})
    store = SimpleNamespace(dispose=lambda: None)
    monkeypatch.setattr(q, "load_dataset", lambda *a: (SimpleNamespace(home=tmp_path), store, ev, items))
    vec = q.Vectors(["x", "y", "z"], np.eye(3, dtype=np.float32), None, None, "test", "test vectors")
    monkeypatch.setattr(q, "load_vectors", lambda *a: vec)
    return q


def test_a_failure_of_our_model_fails_the_quality_benchmark(quality: ModuleType, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any) -> Any:
        raise RuntimeError("ranker fit crashed")

    monkeypatch.setattr(quality, "ours", broken)
    with pytest.raises(RuntimeError, match="ranker fit crashed"):
        quality.run_dataset("hm", _run_args(tmp_path))


def test_a_peer_that_cannot_run_is_only_noted(quality: ModuleType, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any) -> Any:
        raise ImportError("no implicit here")

    monkeypatch.setattr(quality, "ours", lambda *a: (Batch(lambda users, hists, k: [["z"] for _ in users]), 0.0))
    monkeypatch.setattr(quality, "implicit_peer", broken)
    r = quality.run_dataset("hm", _run_args(tmp_path))
    assert r["metrics"]["recall"] == 1.0 and r["errors"] == {"implicit_als": "ImportError: no implicit here"}


def _fake_bench(run_all: ModuleType, tmp_path: Path, answer: dict[str, Any]) -> Any:
    script = tmp_path / "fake_quality.py"
    script.write_text(f"import json\nprint(json.dumps({answer!r}))\n")
    return run_all.Bench("quality", [sys.executable, str(script)], own=("quality",))


def test_run_all_fails_a_dataset_entry_without_our_figures(tmp_path: Path) -> None:
    run_all = _load("run_all")
    ok = {"k": 20, "generated_at": "2026-12-07T00:00:00Z", "metrics": {"recall": 0.1, "ndcg": 0.05},
          "errors": {"cornac_vbpr": "ImportError: no cornac"}}  # an optional peer missing is no failure
    assert run_all.run(_fake_bench(run_all, tmp_path, {"ml100k": ok}), tmp_path, HOST).startswith("ok")
    assert not (tmp_path / "quality.failed.json").exists()
    broken = {**ok, "metrics": None, "errors": {"ours": "RuntimeError: ranker fit crashed"}}
    status = run_all.run(_fake_bench(run_all, tmp_path, {"ml100k": ok, "hm": broken}), tmp_path, HOST)
    assert status == "error: hm: no metrics (RuntimeError: ranker fit crashed)"
    failed = json.loads((tmp_path / "quality.failed.json").read_text())
    assert failed["error"] == "hm: no metrics (RuntimeError: ranker fit crashed)"
    summary = _load("summary")
    rows = {r.benchmark: r for r in summary.rows_for(tmp_path / "quality.failed.json")}
    assert rows["quality.failed"].figures.startswith("error: hm: no metrics")
    (tmp_path / "quality.json").write_text(json.dumps({"hm": broken}))
    [row] = summary.rows_for(tmp_path / "quality.json")
    assert row.figures == "error: no figures of ours (RuntimeError: ranker fit crashed)"


def test_quick_runs_never_write_into_the_committed_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_HM_HOME", str(tmp_path / "hm"))
    run_all = _load("run_all")
    out = tmp_path / "quick"
    argv = {b.name: b.argv for b in run_all.benches(out, quick=True)}
    for name in ("reach", "shopper_lists", "withheld_hm", "withheld_ml100k", "quality"):
        i = argv[name].index("--out")
        assert argv[name][i + 1] == str(out), name
    for script in ("reach", "shopper_lists", "withheld"):  # the scripts take the folder, bench/results by default
        src = (BENCH / f"{script}.py").read_text()
        assert 'ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results"' in src, script
        assert src.count('ROOT / "bench" / "results"') == 1 + (script == "withheld"), script  # + withheld's scratch


def test_summary_rows_name_their_run() -> None:
    summary = _load("summary")
    lex = {"default_mode": {"rare_word_recall_at_20": 0.9}, "vector_only": {}}
    assert summary.lexical_rows({**lex, "seed": 0})[0][0] == "hybrid text search (H&M, seed 0)"
    assert summary.lexical_rows({**lex, "seed": 1})[0][0] == "hybrid text search (H&M, seed 1)"


def test_an_evaluate_row_names_its_part(tmp_path: Path) -> None:
    summary = _load("summary")
    r = {"k": 20, "protocol": "last_day", "users": 167, "metrics": {"recall": 0.08, "ndcg": 0.06},
         "baselines": {"popular": {"recall": 0.01, "ndcg": 0.005}}, "split": {"part": "validation"},
         "measured_at": "2026-12-07T00:00:00Z"}
    (tmp_path / "evaluate_hm.json").write_text(json.dumps(r))
    [row] = summary.rows_for(tmp_path / "evaluate_hm.json")
    assert row.benchmark == "recsys evaluate (hm, validation part)"
    (tmp_path / "evaluate_hm.json").write_text(json.dumps({**r, "split": {"part": None}}))
    [row] = summary.rows_for(tmp_path / "evaluate_hm.json")
    assert row.benchmark == "recsys evaluate (hm)"  # every eligible user (--part all): no part to name
