"""The `make bench` summary table (bench/summary.py, bench/run_all.py --summary-only) on fabricated result JSON."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
HOST = {"cpu": "Test CPU 9000", "cores": 2, "ram_gb": 23.5, "os": "Linux x86_64", "python": "3.11.7"}
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # run_all imports its sibling as `summary`
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


summary = _load("summary")


def _write(d: Path, name: str, obj: Any) -> None:
    (d / f"{name}.json").write_text(json.dumps(obj))


def _metrics(recall: float, ndcg: float) -> dict[str, float]:
    return {"recall": recall, "ndcg": ndcg}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    _write(d, "import_speed", {"measured_at": "2026-11-20T10:00:00Z", "sqlite": {
        "items": 1000, "events": 2000, "items_rows_per_s": 11730, "events_rows_per_s": 29437, "total_s": 2.28,
        "items_speedup_vs_orm": 1.4}, "postgresql": {"skipped": "PostgreSQL unavailable: refused"}})
    _write(d, "encoders_throughput", {"encoder": "recsys-lite", "measured_at": "2026-11-21", "throughput": {
        "bare_images_per_s": 11.98, "pipeline_images_per_s": 12.15, "ratio": 0.985, "pipeline_texts_per_s": 265.2,
        "best_config": "channels_last_b16", "threads": 2}})
    _write(d, "index", {"measured_at": "2026-11-22T08:30:00Z", "machine": {"cpus": 2}, "runs": [{
        "n": 1_000_000, "d": 384, "exact": {"bytes_per_item": 1536},
        "hnsw_faiss": {"build_s": 520.08, "sweep": [{"recall_at_10": 0.9552}]},
        "ivfpq": {"factory": "IVF1024,PQ96x7", "build_s": 117.5},
        "summary": {"hnsw_faiss_at_0.95": {"ef_search": 512, "recall_at_10": 0.9552, "qps": 389.2},
                    "hnsw_faiss_qps_at_recall_0.95": 488.0,
                    "hnsw_speedup_vs_exact": 4.8, "hnsw_speedup_vs_exact_one_query_per_call": 134.9,
                    "hnsw_faiss_vs_hnswlib_at_equal_recall": 0.59, "ivfpq_bytes_per_item": 93.75,
                    "ivfpq_best_recall_at_10": 0.678,
                    "ivfpq_rerank_at_0.95": {"rerank_recall_at_10": 0.976, "rerank_qps": 46.0}}}, {
        # the newer layout: a streamed IVF-PQ-only run dated by its own start
        "n": 10_000_000, "d": 384, "mode": "streamed", "started": "2026-11-30T22:10:00Z", "peak_rss_gb": 9.5,
        "ivfpq": {"factory": "OPQ96,IVF16384,PQ96x8", "build_s": 5400.0},
        "summary": {"ivfpq_factory": "OPQ96,IVF16384,PQ96x8", "ivfpq_bytes_per_item": 128.0,
                    "ivfpq_best_recall_at_10": 0.74, "ivfpq_at_0.7": {"nprobe": 32, "recall_at_10": 0.71, "qps": 150.0},
                    "ivfpq_rerank_at_0.95": None}}]})
    _write(d, "quality", {
        "hm": {"k": 20, "users": 643, "protocol": "last_day", "generated_at": "2026-11-23T14:36:14Z",
               "metrics": _metrics(0.10229, 0.068981),
               "baselines": {"popular": _metrics(0.012, 0.007), "item_cooccurrence": _metrics(0.0428, 0.0236)},
               "peers": {"implicit_bpr": _metrics(0.054554, 0.032026), "implicit_als": _metrics(0.05, 0.028)}},
        "ml100k": {"k": 20, "users": 698, "protocol": "last_interaction", "generated_at": "2026-11-24T09:00:00Z",
                   "metrics": _metrics(0.25, 0.11), "baselines": {"popular": _metrics(0.125, 0.05)}, "peers": {}}})
    _write(d, "api_load", {"measured_at": "2026-11-23", "machine": {"cpus": 2}, "results": {
        "healthz": {"1": {"rps": 754.4, "errors": 0}, "16": {"rps": 356.6, "errors": 0}},
        "recommendations": {"1": {"rps": 54.4, "p50_ms": 17.9, "errors": 0},
                            "16": {"rps": 66.8, "p50_ms": 240.4, "errors": 1}},
        "recommendations_uncached": {"1": {"rps": 30.0, "errors": 0}, "16": {"rps": 40.0, "errors": 0}}},
        "recommendations_rps_over_healthz": {"1": 0.072, "16": 0.187}, "p99_over_p50_c16": 1.71,
        "uncached_recommendations_rps_over_healthz": {"1": 0.04, "16": 0.112}, "uncached_p99_over_p50_c16": 2.5,
        "soak": {"seconds": 300.0, "concurrency": 16, "requests": 11680, "errors": 0, "rss_growth_pct": 1.37,
                 "uncached": True}})
    _write(d, "diversity_hm.failed", {"skipped": "BENCH_HM_HOME not set", "measured_at": "2026-11-30T12:00:00Z"})
    _write(d, "mystery", {"measured_at": "2026-11-30", "x": 1})
    return d


def _rows(table: str) -> dict[str, list[str]]:
    out = {}
    for line in table.splitlines():
        if line.startswith("| ") and not line.startswith("| benchmark"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            out[cells[0]] = cells[1:]
    return out


def test_table_has_machine_date_figures_and_ratios(results: Path) -> None:
    table = summary.table(results, now=NOW, host=HOST)
    assert "2026-12-01 06:00 UTC" in table and "Test CPU 9000, 2 cores, 23.5 GiB RAM" in table
    rows = _rows(table)
    measured, figs, ratios = rows["import (H&M)"]
    assert measured == "2026-11-20 10:00" and "11,730 item rows/s" in figs and "29,437 event rows/s" in figs
    assert "PostgreSQL: skipped" in figs and ratios == "bulk vs per-row ORM item rows/s: 1.4x SQLite"
    assert rows["encoder throughput (recsys-lite)"][2] == "pipeline / bare 0.985"
    measured, figs, ratios = rows["index 1M x 384"]
    assert measured == "2026-11-22 08:30, 2 cores"  # the file's date and cores: the run has none of its own
    assert "HNSW 488 q/s at recall@10 0.95 (best recall 0.955, build 520 s)" in figs
    assert "93.8 B/item, best recall@10 0.678, re-ranked 0.976 at 46.0 q/s" in figs
    assert "HNSW vs exact 4.8x batched, 134.9x one query per call" in ratios
    assert "vs hnswlib 0.59x" in ratios and "IVF-PQ 16.4x smaller than float32 vectors" in ratios  # 1536 / 93.75
    measured, figs, ratios = rows["index 10M x 384 (streamed)"]
    assert measured == "2026-11-30 22:10, 2 cores"
    assert "OPQ96,IVF16384,PQ96x8 128 B/item, best recall@10 0.74, 150 q/s at recall 0.71 (nprobe 32)" in figs
    assert "peak RSS 9.5 GiB" in figs and "re-ranked" not in figs and "12x smaller" in ratios
    # each dataset keeps its own date; the ratio is over the best of peers and baselines
    measured, figs, ratios = rows["quality hm"]
    assert measured == "2026-11-23 14:36" and "recall@20 0.1023, NDCG@20 0.0690" in figs
    assert ratios == "vs best peer or baseline: recall 1.88x implicit_bpr, ndcg 2.15x implicit_bpr"
    assert rows["quality ml100k"][0] == "2026-11-24 09:00"
    assert rows["quality ml100k"][2] == "vs best baseline: recall 2x popular, ndcg 2.2x popular"
    measured, figs, ratios = rows["HTTP API load"]
    assert "54.4/66.8 req/s at concurrency 1/16" in figs and "uncached 30.0/40.0 req/s, 1 errors" in figs
    assert "soak 300 s at c16 uncached: 11,680 requests" in figs
    assert "recommendations / healthz req/s 0.072/0.187, p99 / p50 at c16 1.71" in ratios
    assert "uncached / healthz req/s 0.04/0.112, p99 / p50 at c16 2.5" in ratios and "+1.37%" in ratios
    assert rows["diversity_hm.failed"][1] == "skipped: BENCH_HM_HOME not set"
    assert "mystery" not in rows  # no rule: described in the README's text, not a table row
    assert "could not summarise" not in table
    order = list(rows)
    assert order.index("import (H&M)") < order.index("index 1M x 384") < order.index("HTTP API load")


def test_a_broken_result_is_a_row_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text('{"runs": [1]}')
    (tmp_path / "api_load.json").write_text("{not json")
    (tmp_path / "import_speed.json").write_text('{"error": "no H&M data", "measured_at": "2026-11-30"}')
    rows = _rows(summary.table(tmp_path, now=NOW, host=HOST))
    assert rows["api_load"][1].startswith("unreadable")
    assert rows["index"][1].startswith("could not summarise (AttributeError")
    assert rows["import_speed"] == ["2026-11-30", "error: no H&M data", "-"]


def test_readme_block_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{summary.START}\nold table\n{summary.END}\n\nafter\n")
    summary.replace_block(readme, "| new |\n")
    summary.replace_block(readme, "| newer |\n")  # idempotent: one block, replaced again
    text = readme.read_text()
    assert text == f"# x\n\nbefore\n\n{summary.START}\n| newer |\n{summary.END}\n\nafter\n"
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="bench-summary"):
        summary.replace_block(readme, "| t |\n")


def test_results_without_a_date_are_stamped_from_the_file_time(tmp_path: Path) -> None:
    _write(tmp_path, "fresh", {"a": 1})
    _write(tmp_path, "dated", {"a": 1, "measured_at": "2026-01-01"})
    _write(tmp_path, "quality", {"hm": {"generated_at": "2026-01-02T00:00:00Z"}})
    (tmp_path / "indented.json").write_text('{\n  "b": 2\n}\n')
    assert summary.stamp_missing_dates(tmp_path) == ["fresh.json", "indented.json"]
    assert json.loads((tmp_path / "fresh.json").read_text())["measured_at"].endswith("Z")
    assert (tmp_path / "indented.json").read_text().startswith('{\n  "b": 2,\n  "measured_at"')
    assert json.loads((tmp_path / "dated.json").read_text()) == {"a": 1, "measured_at": "2026-01-01"}
    assert "measured_at" not in json.loads((tmp_path / "quality.json").read_text())


def test_summary_only_runs_nothing_and_writes_the_table(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_all = _load("run_all")
    run_all.main(["--summary-only", "--results", str(results)])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["runs"] == {} and out["readme"] is None  # a custom results folder never touches the README
    text = (results / "SUMMARY.md").read_text()
    assert text.startswith("# Benchmark summary") and "| index 1M x 384 |" in text


def test_encoders_output_is_kept_as_two_results() -> None:
    run_all = _load("run_all")
    both = run_all._encoders_split({"encoder": "e", "throughput": {"ratio": 1.0}, "hm": {"pairs_val": 5}})
    assert both == {"encoders_throughput": {"encoder": "e", "throughput": {"ratio": 1.0}},
                    "encoders_quality": {"encoder": "e", "hm": {"pairs_val": 5}}}
    assert set(run_all._encoders_split({"encoder": "e", "throughput": {}})) == {"encoders_throughput"}


def test_a_run_is_stamped_and_a_failure_keeps_the_last_good_result(tmp_path: Path) -> None:
    run_all = _load("run_all")

    def bench(code: str) -> Any:
        return run_all.Bench("fake", [sys.executable, "-c", code], lambda r: {"fake": r})

    assert run_all.run(bench("print('noise'); print('{\"qps\": 5}')"), tmp_path, HOST).startswith("ok")
    good = json.loads((tmp_path / "fake.json").read_text())
    assert good["qps"] == 5 and good["measured_on"] == HOST and good["measured_at"].endswith("Z")
    assert run_all.run(bench("import sys; sys.exit('boom')"), tmp_path, HOST) == "error: boom"
    assert json.loads((tmp_path / "fake.json").read_text()) == good  # the last good numbers stay
    assert json.loads((tmp_path / "fake.failed.json").read_text())["error"] == "boom"
    assert run_all.run(bench("print('{\"skipped\": \"no data\"}')"), tmp_path, HOST) == "skipped: no data"
    run_all.run(bench("print('{\"qps\": 6}')"), tmp_path, HOST)
    assert not (tmp_path / "fake.failed.json").exists()  # a success clears the failure
    skipped = run_all.Bench("fake", ["false"], skip="BENCH_HM_HOME not set")
    assert run_all.run(skipped, tmp_path, HOST).startswith("skipped (BENCH_HM_HOME not set)")


def test_superseded_results_say_so_and_committed_files_keep_their_commit_date(tmp_path: Path) -> None:
    import subprocess

    r = {"k": 20, "protocol": "last_day", "users": 10, "metrics": {"recall": 0.1, "ndcg": 0.05},
         "baselines": {"popular": {"recall": 0.05, "ndcg": 0.02}}, "superseded": "leaky protocol",
         "measured_at": "2026-11-23T10:00:00Z"}
    (tmp_path / "evaluate_hm.json").write_text(json.dumps(r))
    [row] = summary.rows_for(tmp_path / "evaluate_hm.json")
    assert row.benchmark == "recsys evaluate (hm) (leaky protocol, superseded)"
    undated = tmp_path / "undated.json"
    undated.write_text('{"x": 1}')
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "undated.json"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "r", "--date", "2026-11-20T08:00:00Z"], check=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": "2026-11-20T08:00:00Z"})
    os.utime(undated, (2_000_000_000, 2_000_000_000))  # a fresh checkout's file time, not the measurement's
    summary.stamp_missing_dates(tmp_path)
    assert json.loads(undated.read_text())["measured_at"] == "2026-11-20T08:00:00Z"


def test_withheld_onnx_and_describe_results_are_rows_and_superseded_ones_come_last(tmp_path: Path) -> None:
    base = {"k": 20, "protocol": "last_day", "users": 153, "measured_at": "2026-12-05T06:08:00Z",
            "metrics": _metrics(0.0525, 0.0412),
            "baselines": {"popular": _metrics(0.01, 0.005), "content_peer": _metrics(0.0441, 0.0315)},
            "slices": {"new_to_user": {"recall": 0.0172}, "repeats": {"recall": 0.75}, "cold_items": {"users": 0}},
            "intervals": {"differences": {"content_peer": {"difference": 0.0084, "ci": [-0.00908, 0.0261]}}},
            "protocol_run": {"dataset": "hm", "part": "test"}}
    _write(tmp_path, "withheld_hm_test", base)
    _write(tmp_path, "withheld_anatomy_hm_validation", {"measured_at": "2026-12-05", "x": 1})  # a study: no row
    _write(tmp_path, "evaluate_hm", {**base, "superseded": "leaky protocol"})
    _write(tmp_path, "onnx_towers", {"encoder": "recsys-lite", "cores": 2, "measured_at": "2026-12-04", "speed": {
        "runtimes": {"torch": {"images_per_s": 13.6, "texts_per_s": 32.1},
                     "onnx": {"images_per_s": 64.4, "texts_per_s": 83.2, "image_speedup_vs_torch": 4.73,
                              "text_speedup_vs_torch": 2.4}}},
        "hm": {"runtimes": {"onnx": {"delta_vs_torch": {"text_to_image_recall@10": 0.0}}}}})
    _write(tmp_path, "describe_hm", {"held_out": 1000, "measured_at": "2026-12-05", "generated_colour_correct": 0.735,
                                     "generated_master_colour_correct": 0.801, "generated_type_correct": 0.804,
                                     "text_to_image_recall@10": {"real_text": 0.9, "generated_only": 0.693}})
    rows = _rows(summary.table(tmp_path, now=NOW, host=HOST))
    _, figs, ratios = rows["withheld shoppers (hm, test part)"]
    assert "recall@20 0.0525" in figs and "new to user 0.0172" in figs and "repeats 0.7500" in figs
    assert "cold items" not in figs  # a slice without a recall is left out, not shown as "?"
    assert "recall 1.19x content_peer" in ratios and "95% CI [-0.009, +0.026]" in ratios
    assert not any("anatomy" in name or name.startswith("withheld shoppers (?") for name in rows)
    assert "onnx vs torch: images 4.73x, texts 2.4x" in rows["encoder runtimes (recsys-lite, 2 threads)"][2]
    assert "colour (exact shade) 0.7350" in rows["descriptions from images (H&M)"][1]
    assert list(rows)[-1] == "recsys evaluate (hm) (leaky protocol, superseded)"
