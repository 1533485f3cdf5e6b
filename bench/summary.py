"""The benchmark summary table: headline figures and ratios from each result JSON in bench/results/.

    python bench/run_all.py --summary-only     # rebuild SUMMARY.md and the README table from the saved JSON

Pure functions over the saved JSON (no benchmark runs here), so the table can be rebuilt after any single benchmark
was rerun. Every row says when its result was measured: ``measured_at`` (stamped by run_all, or back-filled),
``generated_at`` (quality.py), else the file's modification time.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

START, END = "<!-- bench-summary:start -->", "<!-- bench-summary:end -->"


STAMPS = ("measured_at", "measured_on", "wall_s")
"""The keys run_all stamps at a result's top level."""


@dataclass
class Row:
    benchmark: str
    measured: str
    figures: str
    ratios: str


# -- formatting ------------------------------------------------------------------------------------------------------
def num(x: Any, digits: int = 3) -> str:
    """12345 -> "12,345"; 0.123456 -> "0.123"; 488.0 -> "488"; None -> "?"."""
    if x is None or isinstance(x, bool) or not isinstance(x, int | float):
        return "?"
    if isinstance(x, int) or (abs(x) >= 100 and float(x).is_integer()):
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}".rstrip("0").rstrip(".") if x else "0"


def times(x: Any) -> str:
    """A ratio: 4.8 -> "4.8x", 16.377 -> "16.4x", 0.985 -> "0.98x"."""
    if not isinstance(x, int | float):
        return "?"
    return f"{x:.{1 if abs(x) >= 10 else 2}f}".rstrip("0").rstrip(".") + "x"


def score(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, int | float) else "?"


def get(d: Any, *path: str | int) -> Any:
    """Nested lookup that answers None for anything missing."""
    for p in path:
        if isinstance(d, dict):
            d = d.get(p)  # type: ignore[call-overload]
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def measured(result: dict[str, Any], path: Path | None = None, base: dict[str, Any] | None = None) -> str:
    """When (and on how many cores, if recorded) a result was measured; ``base`` is the file a row came from."""
    when = next((src.get(k) for src in (result, base or {}) for k in ("measured_at", "generated_at", "started")
                 if src.get(k)), None)
    if when:
        when = str(when).replace("T", " ")[:16].rstrip("Z")
    elif path is not None and path.exists():
        when = f"{datetime.fromtimestamp(path.stat().st_mtime, UTC):%Y-%m-%d %H:%M} (file time)"
    cores = None
    for src in (result, base or {}):
        where, mach = src.get("measured_on"), src.get("machine")
        cores = cores or (where.get("cores") if isinstance(where, dict) else None) or (
            mach.get("cpus") if isinstance(mach, dict) else None)
    return f"{when or '?'}" + (f", {cores} cores" if cores else "") + _carried(result, base)


def _carried(result: dict[str, Any], base: dict[str, Any] | None) -> str:
    """The parts of a result kept from an earlier run (run_all's ``carried_over``), with their own dates."""
    carried = next((c for src in (result, base or {}) if isinstance(c := src.get("carried_over"), dict) and c), {})
    dates = {part: (v.get("measured_at") if isinstance(v, dict) else v) or "?" for part, v in carried.items()}
    return "".join(f"; {part} part from {str(d).replace('T', ' ')[:16].rstrip('Z')}" for part, d in dates.items())


# -- one function per kind of result ---------------------------------------------------------------------------------
def import_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    figs, ratios = [], []
    for db, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        d = r.get(db)
        if not isinstance(d, dict):
            continue
        if "skipped" in d:
            figs.append(f"{label}: skipped ({d['skipped']})")
            continue
        figs.append(f"{label} {num(d.get('items_rows_per_s'))} item rows/s, {num(d.get('events_rows_per_s'))} event "
                    f"rows/s (all {num(d.get('total_s'))} s)")
        ratios.append(f"{times(d.get('items_speedup_vs_orm'))} {label}")
    size = next((f"{num(d['items'])} items, {num(d['events'])} events: " for d in (r.get("sqlite"), r.get("postgresql"))
                 if isinstance(d, dict) and "items" in d and "events" in d), "")
    return [("import (H&M)", size + "; ".join(figs),
             ("bulk vs per-row ORM item rows/s: " + ", ".join(ratios)) if ratios else "-")]


def encoder_throughput_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    t = r.get("throughput", r)
    device = t.get("device") or r.get("device") or "CPU"
    figs = (f"{device}: pipeline {num(t.get('pipeline_images_per_s'))} images/s, bare forward "
            f"{num(t.get('bare_images_per_s'))} images/s ({t.get('best_config', '?')}, {t.get('threads', '?')} "
            f"threads); texts {num(t.get('pipeline_texts_per_s'))}/s")
    return [(f"encoder throughput ({r.get('encoder', '?')})", figs, f"pipeline / bare {num(t.get('ratio'))}")]


def encoder_quality_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    h = r.get("hm", r)
    figs = (f"{num(h.get('pairs_val'))} held-out articles: R@10 image->text {num(h.get('image_to_text_recall@10'))}, "
            f"text->image {num(h.get('text_to_image_recall@10'))}; image search p@20 colour "
            f"{num(get(h, 'probes', 'held_out', 'colour_precision@20'))}, type "
            f"{num(get(h, 'probes', 'held_out', 'type_precision@20'))}")
    zs = h.get("zero_shot_tag_accuracy") or {}
    ratios = ", ".join(f"{k} {num(v.get('accuracy'))} ({v.get('labels')} labels)" for k, v in zs.items())
    return [(f"encoder quality (H&M, {r.get('encoder', '?')})", figs, f"zero-shot tag accuracy: {ratios or '?'}")]


def index_rows(r: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """One row per (n, d) run, dated by the run's own ``started`` where it has one (runs are merged across
    invocations). Reads both summary layouts of bench/index.py (with and without the ``_batch`` suffixes)."""
    rows = []
    for run in r.get("runs") or []:
        n, d, s = run.get("n"), run.get("d"), run.get("summary") or {}
        figs, ratios = [], []
        if run.get("hnsw_faiss"):
            qps = s.get("hnsw_faiss_qps_at_recall_0.95_batch", s.get("hnsw_faiss_qps_at_recall_0.95"))
            best = max((x.get("recall_at_10", 0) for x in get(run, "hnsw_faiss", "sweep") or []), default=None)
            figs.append(f"HNSW {num(qps)} q/s at recall@10 0.95 (best recall {num(best)}, build "
                        f"{num(get(run, 'hnsw_faiss', 'build_s'))} s)")
            speed = s.get("hnsw_faiss_speedup_vs_exact_batch", s.get("hnsw_speedup_vs_exact"))
            speed1 = s.get("hnsw_faiss_speedup_vs_exact_one_query_per_call",
                           s.get("hnsw_speedup_vs_exact_one_query_per_call"))
            vs = s.get("hnsw_faiss_vs_hnswlib_at_equal_recall_batch", s.get("hnsw_faiss_vs_hnswlib_at_equal_recall"))
            ratios.append(f"HNSW vs exact {times(speed)} batched, {times(speed1)} one query per call")
            ratios.append(f"vs hnswlib {times(vs)} q/s at equal recall")
        ivf = run.get("ivfpq")
        if ivf:
            figs.append(_ivf_figure(s, ivf, run.get("peak_rss_gb")))
            per_item = s.get("ivfpq_bytes_per_item", ivf.get("bytes_per_item"))
            if per_item and isinstance(d, int):
                ratios.append(f"IVF-PQ {times(4 * d / per_item)} smaller than float32 vectors")
        for vs_, v in zip(s.get("ivfpq_variants") or [], run.get("ivfpq_variants") or [], strict=False):
            figs.append("also " + _ivf_figure(vs_, v, None))
        name = f"index {_count(n)} x {d}" + (" (streamed)" if run.get("mode") == "streamed" else "")
        rows.append((name, "; ".join(figs) or "no summary", "; ".join(ratios) or "-", run))
    return rows


def _ivf_figure(s: dict[str, Any], ivf: dict[str, Any], peak_rss: Any) -> str:
    """One IVF-PQ layout: factory, bytes per item, best recall, speed at recall 0.7, re-ranked recall."""
    per_item = s.get("ivfpq_bytes_per_item", ivf.get("bytes_per_item"))
    at07, rr = s.get("ivfpq_at_0.7") or {}, s.get("ivfpq_rerank_at_0.95") or {}
    parts = [f"IVF-PQ {s.get('ivfpq_factory') or ivf.get('factory', '')} {num(per_item)} B/item, best "
             f"recall@10 {num(s.get('ivfpq_best_recall_at_10'))}"]
    if at07:
        parts.append(f"{num(at07.get('qps'))} q/s at recall {num(at07.get('recall_at_10'))} "
                     f"(nprobe {at07.get('nprobe')})")
    if rr:
        parts.append(f"re-ranked {num(rr.get('rerank_recall_at_10'))} at {num(rr.get('rerank_qps'))} q/s")
    extra = [f"build {num(ivf.get('build_s'))} s"]
    if peak_rss is not None:
        extra.append(f"peak RSS {num(peak_rss)} GiB")
    return ", ".join(parts) + f" ({', '.join(extra)})"


def _count(n: Any) -> str:
    if not isinstance(n, int):
        return "?"
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))


def _vs_best(r: dict[str, Any], metric: str, groups: Iterable[str]) -> tuple[str, float] | None:
    """(name, ours / best other) over the named groups of competitors, for one metric."""
    ours = get(r, "metrics", metric)
    others = [(name, m.get(metric)) for g in groups for name, m in (r.get(g) or {}).items()
              if isinstance(m, dict) and isinstance(m.get(metric), int | float)]
    if not isinstance(ours, int | float) or not others:
        return None
    name, best = max(others, key=lambda x: x[1])
    return (name, ours / best) if best else None


def evaluation_row(name: str, r: dict[str, Any]) -> tuple[str, str, str]:
    """A `recsys evaluate` result (also each dataset of quality.json): ours, and ours over the best competitor."""
    if not r.get("metrics"):  # our own model failed (or did not run): the baselines alone are no result
        why = (r.get("errors") or {}).get("ours")
        return name, f"error: no figures of ours{f' ({why})' if why else ''}", "-"
    m = r["metrics"]
    k = r.get("k", 20)
    figs = (f"recall@{k} {score(m.get('recall'))}, NDCG@{k} {score(m.get('ndcg'))} "
            f"({num(r.get('users'))} users, {r.get('protocol', '?')})")
    groups = ("peers", "baselines") if r.get("peers") else ("baselines",)
    label = "best peer or baseline" if r.get("peers") else "best baseline"
    ratios = []
    for metric in ("recall", "ndcg"):
        vb = _vs_best(r, metric, groups)
        if vb:
            ratios.append(f"{metric} {times(vb[1])} {vb[0]}")
    return name, figs, (f"vs {label}: " + ", ".join(ratios)) if ratios else "-"


def withheld_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A ``bench/withheld.py`` run: ours on shoppers kept out of the build, the slices the issue names, and the
    paired 95% interval of ours minus the best baseline."""
    run = r.get("protocol_run") or {}
    name, figs, ratios = evaluation_row(f"withheld shoppers ({run.get('dataset', '?')}, {run.get('part', '?')} part)",
                                        r)
    sl = r.get("slices") or {}
    figs += "; " + ", ".join(f"{k.replace('_', ' ')} {score(get(sl, k, 'recall'))}"
                             for k in ("new_to_user", "cold_items", "repeats") if get(sl, k, "recall") is not None)
    vb = _vs_best(r, "recall", ("baselines",))
    ci = get(r, "intervals", "differences", vb[0], "ci") if vb else None
    if vb and isinstance(ci, list) and len(ci) == 2:
        ratios += f"; recall minus {vb[0]}: 95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}]"
    return [(name, figs, ratios)]


def onnx_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``bench/onnx_towers.py``: the towers on ONNX Runtime against torch on the same inputs, and H&M quality."""
    rt = get(r, "speed", "runtimes") or {}
    figs = ", ".join(f"{k} {num(get(v, 'images_per_s'))} images/s, {num(get(v, 'texts_per_s'))} texts/s"
                     for k, v in rt.items() if k in ("torch", "onnx", "onnx-int8"))
    delta = get(r, "hm", "runtimes", "onnx", "delta_vs_torch") or {}
    onnx = rt.get("onnx") or {}
    ratios = (f"onnx vs torch: images {times(onnx.get('image_speedup_vs_torch'))}, texts "
              f"{times(onnx.get('text_speedup_vs_torch'))}; H&M quality deltas "
              + (", ".join(f"{k} {v:+.3f}" for k, v in delta.items()) or "not measured"))
    return [(f"encoder runtimes ({r.get('encoder', '?')}, {r.get('cores', '?')} threads)", figs, ratios)]


def describe_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``bench/describe_hm.py``: generated descriptions of held-out articles against their real text."""
    t2i = r.get("text_to_image_recall@10") or {}
    figs = (f"{num(r.get('held_out'))} held-out articles: colour (exact shade) "
            f"{score(r.get('generated_colour_correct'))}, master colour "
            f"{score(r.get('generated_master_colour_correct'))}, garment type "
            f"{score(r.get('generated_type_correct'))} correct in the generated text")
    ratios = (f"text->image R@10 generated only {score(t2i.get('generated_only'))} vs real text "
              f"{score(t2i.get('real_text'))}")
    return [("descriptions from images (H&M)", figs, ratios)]


def quality_rows(r: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """One row per dataset; the fourth element is the dataset's own result (for its date)."""
    return [(*evaluation_row(f"quality {name}", res), res) for name, res in r.items()
            if isinstance(res, dict) and name not in STAMPS]  # run_all's stamp is no dataset


def diversity_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    sweep = r.get("sweep") or []
    if not sweep:
        return [("diversity (MMR)", "no sweep", "-")]
    base, last = sweep[0], sweep[-1]
    figs = (f"MMR {base.get('diversity')} -> {last.get('diversity')}: recall@{r.get('k', 20)} "
            f"{num(base.get('recall'))} -> {num(last.get('recall'))}, intra-list similarity "
            f"{num(base.get('intra_list_similarity'))} -> {num(last.get('intra_list_similarity'))}")
    ratios = []
    for s in sweep[1:]:
        if base.get("recall") and base.get("intra_list_similarity"):
            ratios.append(f"at {s.get('diversity')}: recall {times(s['recall'] / base['recall'])}, similarity "
                          f"{times(s['intra_list_similarity'] / base['intra_list_similarity'])}")
    return [("diversity (MMR, H&M)", figs, "; ".join(ratios) or "-")]


def lexical_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    d, v = r.get("default_mode") or {}, r.get("vector_only") or {}
    figs = (f"rare words recall@20 {num(d.get('rare_word_recall_at_20'))}, name in top 5 "
            f"{num(d.get('name_in_top_5'))}, broad colour/type p@20 {num(d.get('broad_colour_precision_at_20'))}"
            f"/{num(d.get('broad_type_precision_at_20'))}")
    ratios = (f"vs vector-only: {num(v.get('rare_word_recall_at_20'))}, {num(v.get('name_in_top_5'))}, "
              f"{num(v.get('broad_colour_precision_at_20'))}/{num(v.get('broad_type_precision_at_20'))}")
    seed = r.get("seed")  # one row per seeded run: two seeds are two rows, told apart
    return [(f"hybrid text search (H&M{'' if seed is None else f', seed {seed}'})", figs, ratios)]


def api_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    res = r.get("results") or {}
    recs = res.get("recommendations") or {}
    conc = sorted(recs, key=lambda c: int(c))
    errors = sum(int(v.get("errors") or 0) for ep in res.values() for v in ep.values())

    def rps(kind: str) -> str:
        return "/".join(num(get(res, kind, c, "rps")) for c in conc)

    client = str(r.get("client") or "httpx").split(" ")[0]
    figs = [f"healthz {rps('healthz')} req/s, recommendations {rps('recommendations')} req/s at concurrency "
            f"{'/'.join(conc)} (p50 {'/'.join(num(recs[c].get('p50_ms')) for c in conc)} ms; load from {client})"]
    if res.get("recommendations_uncached"):
        figs.append(f"uncached {rps('recommendations_uncached')} req/s")
    figs[-1] += f", {errors} errors"
    soak = r.get("soak") or {}
    if soak.get("requests") is not None:
        figs.append(f"soak {num(soak.get('seconds'))} s at c{soak.get('concurrency')}"
                    f"{' uncached' if soak.get('uncached') else ''}: {num(soak.get('requests'))} requests, "
                    f"{num(soak.get('errors'))} errors")
    ratios = []
    for prefix, label in (("", "recommendations"), ("uncached_", "uncached")):
        ratio = r.get(f"{prefix}recommendations_rps_over_healthz")
        if ratio:
            ratios.append(f"{label} / healthz req/s {'/'.join(num(ratio.get(c)) for c in conc)}, p99 / p50 at c16 "
                          f"{num(r.get(f'{prefix}p99_over_p50_c16'))}")
    if soak.get("rss_growth_pct") is not None:
        ratios.append(f"soak RSS growth {soak['rss_growth_pct']:+.2f}%")
    on_pg = (r.get("server") or {}).get("database") == "postgresql"
    return [("HTTP API load (PostgreSQL)" if on_pg else "HTTP API load", "; ".join(figs), "; ".join(ratios) or "-")]


def miss_path_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    served, sc, sim, sb = (r.get(k) or {} for k in ("served", "scoring", "similar", "search_batching"))
    st = served.get("stage_median_ms") or {}
    ahead = (f", {num(get(r, 'computed_ahead', 'first_pass', 'cpu_ms_per_request'))} with the lists computed ahead in "
             f"{num(get(r, 'computed_ahead', 'cpu_s'))} s" if r.get("computed_ahead") else "")
    figs = (f"{num(r.get('items'))} items: {num(served.get('cpu_ms_per_request'))} ms of CPU per uncached list "
            f"({num(get(served, 'first_pass', 'cpu_ms_per_request'))} on a first pass{ahead}); candidates / score / "
            f"rules "
            f"{num(st.get('candidates_ms'))} / {num(st.get('score_ms'))} / {num(st.get('rules_ms'))} ms; forward numpy "
            f"{num(sc.get('numpy_one_ms'))}, torch {num(sc.get('torch_one_ms'))}, torch in 16s "
            f"{num(sc.get('torch_batch16_ms'))} ms; search {num(sb.get('one_request_ms'))} alone, "
            f"{num(sb.get('batch16_ms_per_request'))} in 16s ms per request")
    ratios = (f"numpy vs torch forward {times(sc.get('speedup_numpy_vs_torch_one'))} (max diff "
              f"{sc.get('max_abs_score_difference', '?'):.1g}); kept vs exact similar {times(sim.get('speedup'))}, "
              f"same lists {num(sim.get('share_same_list'))}")
    return [(f"ranking a miss ({'H&M' if (r.get('items') or 0) > 10_000 else 'demo'})", figs, ratios)]


def batch_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    figs = (f"{num(r.get('users'))} users, every list ranked anew: `recsys recommend-batch` "
            f"{num(r.get('batch_users_per_s'))} users/s, the API once per user {num(r.get('api_users_per_s'))} users/s "
            f"(median of {num(r.get('rounds'))} alternating rounds)")
    return [("Lists for every user (batch)", figs, f"batch / API {times(r.get('batch_over_api'))}")]


def simulation_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    ab, aa = r.get("ab") or {}, r.get("aa") or {}
    worse = get(ab, "variants", "popular") or {}
    control = get(ab, "variants", "control") or {}
    figs = (f"{num(r.get('users'))} users, {num(r.get('items'))} items: CTR ranker {num(get(control, 'ctr', 'rate'))}"
            f" vs popular-only {num(get(worse, 'ctr', 'rate'))}, p = {worse.get('p_value', '?'):.2g}; "
            f"A/A false positives {aa.get('false_positives')}/{aa.get('runs')} at alpha {aa.get('alpha')} "
            f"(unclustered test {aa.get('false_positives_unclustered')}); {num(aa.get('resplits'))} re-splits of "
            f"their users: {num(aa.get('resplit_false_positive_rate'))} (unclustered "
            f"{num(aa.get('resplit_false_positive_rate_unclustered'))})")
    exact = "report counts = events sent" if ab.get("counts_match") and aa.get("counts_match") else "COUNTS DIFFER"
    return [("Experiment simulation", figs, f"worse variant found: {ab.get('worse_detected')}; {exact}")]


# file name pattern -> rows; the first match wins, the order is the table's order
RULES: list[tuple[str, Callable[[dict[str, Any]], list[Any]]]] = [
    (r"import_speed", import_rows),
    (r"encoders?_throughput", encoder_throughput_rows),
    (r"encoders?_quality", encoder_quality_rows),
    (r"onnx_towers", onnx_rows),
    (r"index.*", index_rows),
    (r"withheld_(hm|ml100k)_(test|validation)", withheld_rows),
    (r"quality", quality_rows),
    (r"evaluate_.*", lambda r: [evaluation_row("recsys evaluate", r)]),
    (r"diversity.*", diversity_rows),
    (r"lexical.*", lexical_rows),
    (r"describe_hm", describe_rows),
    (r"miss_path.*", miss_path_rows),
    (r"batch_lists", batch_rows),
    (r"api_load_hm", lambda r: [("HTTP API load (H&M store)", *api_rows(r)[0][1:])]),
    (r"api_load.*", api_rows),
    (r"simulate_feedback", simulation_rows),
]


def rows_for(path: Path) -> list[Row]:
    """The table rows of one result file (an error or skip is a row saying so)."""
    try:
        r = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return [Row(path.stem, "?", f"unreadable: {e}", "-")]
    if not isinstance(r, dict):
        return [Row(path.stem, "?", "not a JSON object", "-")]
    when = measured(r, path)
    if "error" in r:
        return [Row(path.stem, when, f"error: {str(r['error'])[:200]}", "-")]
    if "skipped" in r:
        return [Row(path.stem, when, f"skipped: {str(r['skipped'])[:200]}", "-")]
    for pattern, rule in RULES:
        if re.fullmatch(pattern, path.stem):
            try:
                out = rule(r)
            except Exception as e:  # one odd file must not cost the whole table; the row says what failed
                return [Row(path.stem, when, f"could not summarise ({type(e).__name__}: {e})", "-")]
            rows = []
            for item in out:
                name, figs, ratios = item[:3]
                if path.stem.startswith("evaluate_"):  # which run, and which users: validation is not the test
                    part = get(r, "split", "part")
                    name = f"{name} ({path.stem.removeprefix('evaluate_')}{f', {part} part' if part else ''})"
                gone = r.get("superseded") or (item[3].get("superseded") if len(item) > 3 else None)
                if gone:  # kept for the record, replaced by a later protocol (the file says which)
                    name = f"{name} ({gone}, superseded)"
                rows.append(Row(name, measured(item[3], None, r) if len(item) > 3 else when, figs, ratios))
            return rows
    return []  # results without a rule (per-feature studies) are described in the README's text, not the table


def _order(path: Path) -> tuple[int, str]:
    for i, (pattern, _) in enumerate(RULES):
        if re.fullmatch(pattern, path.stem):
            return i, path.stem
    return len(RULES), path.stem


# -- machine and the whole table -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """This machine: CPU model (from /proc/cpuinfo), cores, RAM, OS and Python."""
    cpu = platform.processor() or platform.machine()
    ram_gb = None
    with contextlib.suppress(OSError, StopIteration):  # not Linux: platform's answer stands
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    with contextlib.suppress(OSError, StopIteration, ValueError):
        kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal:"))
        ram_gb = round(kb / 2**20, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": ram_gb, "os": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version()}


def describe(m: dict[str, Any]) -> str:
    ram = f", {m['ram_gb']} GiB RAM" if m.get("ram_gb") else ""
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores{ram} ({m.get('os', '?')}, Python {m.get('python', '?')})"


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def table(results: Path, *, now: datetime | None = None, host: dict[str, Any] | None = None) -> str:
    """The summary in markdown: machine, generation date, and one row per headline result in ``results``."""
    now = now or datetime.now(UTC)
    files = sorted((p for p in results.glob("*.json")), key=_order)
    lines = [f"Table generated {now:%Y-%m-%d %H:%M} UTC on {describe(host or machine())}. "
             "Each row was measured at its own date (cores as recorded by the run); `bench/results/*.json` has "
             "every figure.", "",
             "| benchmark | measured (UTC) | figures | ratios |", "|---|---|---|---|"]
    rows = [row for p in files for row in rows_for(p)]
    # superseded results stay for the record, after the current ones (a stable sort keeps each group's order)
    for row in sorted(rows, key=lambda row: "superseded)" in row.benchmark):
        lines.append("| " + " | ".join(_cell(c) for c in (row.benchmark, row.measured, row.figures, row.ratios))
                     + " |")
    if not files:
        lines.append("| (no results yet: run `make bench`) | | | |")
    return "\n".join(lines) + "\n"


def write_summary(results: Path, readme: Path | None, *, now: datetime | None = None) -> str:
    """Write ``results/SUMMARY.md`` and replace the README's block between the markers; returns the table."""
    body = table(results, now=now)
    (results / "SUMMARY.md").write_text("# Benchmark summary\n\n" + body)
    if readme is not None:
        replace_block(readme, body)
    return body


def replace_block(readme: Path, body: str) -> None:
    text = readme.read_text()
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise SystemExit(f"{readme} has no {START} ... {END} block to put the summary table in")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{body}{END}{tail}")


def stamp_missing_dates(results: Path) -> list[str]:
    """Give each result without a date ``measured_at`` = when git last committed it unchanged (a fresh clone's file
    times are the checkout's), else its file's modification time (right after a rerun, that is when it was
    measured); returns the files stamped. quality.json keeps ``generated_at`` per dataset."""
    stamped = []
    for p in sorted(results.glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(r, dict) or r.get("measured_at") or r.get("generated_at"):
            continue
        if r and all(isinstance(v, dict) and "generated_at" in v for v in r.values()):
            continue
        r["measured_at"] = _committed_at(p) or f"{datetime.fromtimestamp(p.stat().st_mtime, UTC):%Y-%m-%dT%H:%M:%SZ}"
        save_like(p, r)
        stamped.append(p.name)
    return stamped


def _committed_at(path: Path) -> str | None:
    """The UTC time of the last commit of ``path`` when the file is tracked and unchanged since; else None."""
    import subprocess

    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", path.name], cwd=path.parent, text=True,
                               capture_output=True, check=True).stdout.strip()
        when = subprocess.run(["git", "log", "-1", "--format=%ct", "--", path.name], cwd=path.parent, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    if dirty or not when:
        return None
    return f"{datetime.fromtimestamp(int(when), UTC):%Y-%m-%dT%H:%M:%SZ}"


def save_like(path: Path, obj: dict[str, Any]) -> None:
    """Rewrite a result file keeping its layout (one line, or the indent it had), so diffs stay small."""
    old = path.read_text() if path.exists() else "{\n  "
    m = re.match(r"\{\n( +)", old)
    indent = len(m.group(1)) if m else None
    path.write_text(json.dumps(obj, indent=indent) + ("\n" if old.endswith("\n") else ""))


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        prog="bench/summary.py", usage="python bench/run_all.py --summary-only",
        description="Functions only (nothing runs here): the table is rebuilt by `python bench/run_all.py "
                    "--summary-only` (SUMMARY.md and the README's table from bench/results/*.json).").parse_args()
    raise SystemExit("bench/summary.py runs nothing by itself: use `python bench/run_all.py --summary-only`")
