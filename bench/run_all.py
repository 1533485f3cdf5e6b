"""`make bench`: run every benchmark, save bench/results/*.json, and write SUMMARY.md and the README's summary table.

The table goes to bench/results/SUMMARY.md and between the README's bench-summary markers.

    python bench/run_all.py [--only import_speed index ...] [--quick] [--summary-only]

Each benchmark prints one JSON object on its last stdout line (index.py and quality.py also write their own files).
Every result is stamped with ``measured_at`` and ``measured_on`` (CPU, cores, RAM). A benchmark that fails or skips
itself leaves the last good result in place and writes ``<name>.failed.json`` instead, which the table shows; a
quality.py dataset without our own figures is such a failure (a peer library that cannot run is only noted), and so
is an answer with nothing to save. A run that measures only some parts (onnx_towers without BENCH_HM_HOME: no H&M
quality; import_speed without PostgreSQL) keeps the saved result's other parts, listed with their date under
``carried_over``.
``--quick`` (or BENCH_QUICK=1) runs the short variants into bench/results/tmp/quick/ (git-ignored) and leaves the
README alone.

Benchmarks on real data read ../shared/data. BENCH_HM_HOME and BENCH_ML100K_HOME name data directories where
`recsys import` and `recsys build` ran: with them the diversity sweep and `recsys evaluate` run too, and quality.py
uses their item vectors; without them quality.py fits and embeds in its own scratch store (`--embed`).
BENCH_POSTGRES_URL names a PostgreSQL database for the API load run on PostgreSQL (the demo is imported into it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from summary import machine, save_like, stamp_missing_dates, write_summary  # noqa: E402

RESULTS = HERE / "results"
README = HERE.parent / "README.md"
Split = Callable[[dict[str, Any]], dict[str, dict[str, Any]]]


@dataclass
class Bench:
    name: str
    argv: list[str]
    split: Split | None = None
    """stdout JSON -> {result file stem: result}; None when the script writes its own files (``own``)."""
    own: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    skip: str | None = None
    parts: tuple[str, ...] = ()
    """Top-level parts of the answer a successful run may leave unmeasured (absent, or ``{"skipped": ...}``): the
    saved result's are kept, and listed in ``carried_over`` (see :func:`carry_over`)."""


def _encoders_split(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """encoders.py answers throughput and H&M quality in one object; they are kept (and rerun) apart."""
    head = {k: r[k] for k in ("encoder", "towers", "torch") if k in r}
    return {stem: {**head, key: r[key]} for stem, key in (("encoders_throughput", "throughput"),
                                                           ("encoders_quality", "hm")) if key in r}


def benches(out: Path, quick: bool) -> list[Bench]:
    py, cli = sys.executable, str(Path(sys.executable).parent / "recsys")
    homes = {"hm": os.environ.get("BENCH_HM_HOME"), "ml100k": os.environ.get("BENCH_ML100K_HOME")}
    vectors = ",".join(f"{k}={v}" for k, v in homes.items() if v)
    quality = [py, str(HERE / "quality.py"), "--out", str(out),
               *(["--vectors-home", vectors] if vectors else ["--embed"]),
               *(["--datasets", "ml100k", "--max-users", "200"] if quick else [])]
    found = [
        Bench("import_speed", [py, str(HERE / "import_speed.py"), *(["--sqlite-only"] if quick else [])],
              lambda r: {"import_speed": r}, parts=("postgresql",)),
        Bench("encoders", [py, str(HERE / "encoders.py"), *(["--skip-quality", "--images", "32"] if quick else [])],
              _encoders_split),
        Bench("index", [py, str(HERE / "index.py"), "--out", str(out / "index.json"), *(["--quick"] if quick else [])],
              own=("index",)),
        Bench("quality", quality, own=("quality",)),
    ]
    for ds in ("hm", "ml100k"):
        home = homes[ds]
        env = {"RECSYS_HOME": home} if home else {}
        reason = None if home else f"BENCH_{ds.upper()}_HOME not set (a data directory where recsys build ran)"
        if ds == "hm":
            weights = ["--weights", "0,0.5"] if quick else ["--weights", "0,0.3,0.6,0.9"]
            found.append(Bench("diversity", [py, str(HERE / "diversity.py"), *weights],
                               lambda r: {"diversity_hm": r}, env=env, skip=reason))
            found.append(Bench("reach", [py, str(HERE / "reach.py"), "--out", str(out)], own=("reach_validation",),
                               env=env, skip=reason))
            found.append(Bench("shopper_lists", [py, str(HERE / "shopper_lists.py"), "--out", str(out)],
                               own=("shopper_lists",), env=env, skip=reason))
        found.append(Bench(f"evaluate_{ds}", [cli, "evaluate", "--part", "validation", "--k", "20", "--json"],
                           lambda r, ds=ds: {f"evaluate_{ds}": r}, env=env, skip=reason))
    for ds in ("hm", "ml100k"):  # validation parts only: a test part is reported once, by hand (README)
        found.append(Bench(f"withheld_{ds}", [py, str(HERE / "withheld.py"), "--dataset", ds, "--part", "validation",
                                              "--scratch", str(out / "tmp"), "--out", str(out)],
                           own=(f"withheld_{ds}_validation",),
                           skip="quick run" if quick else None))
    hm_reason = None if homes["hm"] else "BENCH_HM_HOME not set (a data directory where recsys build ran)"
    found.append(Bench("onnx_towers", [py, str(HERE / "onnx_towers.py"), "--home", str(out / "tmp" / "onnx"),
                                       *(["--features-from", homes["hm"]] if homes["hm"] and not quick
                                         else ["--skip-quality"])], lambda r: {"onnx_towers": r},
                       parts=("hm",)))
    found.append(Bench("describe_hm", [py, str(HERE / "describe_hm.py"), "--home", str(out / "tmp" / "describe"),
                                       "--copy-from", homes["hm"] or ""], lambda r: {"describe_hm": r},
                       skip=hm_reason or ("quick run" if quick else None)))
    found.append(Bench("miss_path", [py, str(HERE / "miss_path.py"), *(["--requests", "200"] if quick else [])],
                       lambda r: {"miss_path": r}))
    found.append(Bench("miss_path_hm", [py, str(HERE / "miss_path.py"), "--home", homes["hm"] or "",
                                        *(["--requests", "200"] if quick else [])],
                       lambda r: {"miss_path_hm": r},
                       skip=None if homes["hm"] else "BENCH_HM_HOME not set (a data directory where recsys build ran)"))
    found.append(Bench("batch_lists", [py, str(HERE / "batch_lists.py"), *(["--rounds", "1"] if quick else [])],
                       lambda r: {"batch_lists": r}))
    short = ["--seconds", "3", "--soak-seconds", "30"] if quick else []
    found.append(Bench("api_load", [py, str(HERE / "api_load.py"), *short], lambda r: {"api_load": r}))
    found.append(Bench("api_load_hm", [py, str(HERE / "api_load.py"), "--home", homes["hm"] or "",
                                       *(short or ["--soak-seconds", "0"])], lambda r: {"api_load_hm": r},
                       skip=None if homes["hm"] else "BENCH_HM_HOME not set (a data directory where recsys build ran)"))
    found.append(Bench("simulate_feedback", [py, str(HERE / "simulate_feedback.py"),
                                             *(["--aa-runs", "4", "--ab-lists", "6"] if quick else [])],
                       lambda r: {"simulate_feedback": r}))
    pg = os.environ.get("BENCH_POSTGRES_URL")
    found.append(Bench("api_load_postgresql", [py, str(HERE / "api_load.py"), "--database-url", pg or "",
                                               *(short or ["--soak-seconds", "0"])],
                       lambda r: {"api_load_postgresql": r},
                       skip=None if pg else "BENCH_POSTGRES_URL not set (an empty PostgreSQL database for the demo)"))
    return found


def _last_json(stdout: str) -> dict[str, Any] | None:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        out = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) else None


def _per_dataset(r: dict[str, Any]) -> bool:
    """quality.py's answer: one entry per dataset, each with its own generated_at."""
    return bool(r) and all(isinstance(v, dict) and "generated_at" in v for v in r.values())


def _failure(r: dict[str, Any] | None) -> str | None:
    """Why a benchmark's answer is a failure, whatever its exit status: an ``error``, or a dataset entry without
    our figures (our own model failed there; a peer that cannot run is only noted in its ``errors``)."""
    if r is None:
        return None
    if not r:
        return "empty answer ({}): nothing was measured"
    if "error" in r:
        return str(r["error"])
    if not _per_dataset(r):
        return None
    bad = [f"{name}: no metrics ({_first_error(v)})" for name, v in r.items() if not v.get("metrics")]
    return "; ".join(bad) or None


def _first_error(entry: dict[str, Any]) -> str:
    """What the entry says went wrong: our model's error first."""
    errors = entry.get("errors") or {}
    return str(errors.get("ours") or next(iter(errors.values()), "no error recorded"))


def _measured(part: Any) -> bool:
    return isinstance(part, dict) and bool(part) and "skipped" not in part


def carry_over(r: dict[str, Any], path: Path, parts: tuple[str, ...]) -> dict[str, Any]:
    """``r`` with each of ``parts`` it did not measure taken from the saved result at ``path`` where that has it
    measured (as quality.py and index.py keep what a run did not redo), so a run that measured less never erases a
    figure. ``carried_over`` names each such part: when and where it was measured (its first measurement, through
    any number of carries) and why it was not measured this time."""
    try:
        saved = json.loads(path.read_text()) if parts and path.exists() else {}
    except (OSError, json.JSONDecodeError):
        saved = {}
    if not isinstance(saved, dict):
        return r
    earlier = saved.get("carried_over") if isinstance(saved.get("carried_over"), dict) else {}
    carried = {}
    for part in parts:
        if _measured(r.get(part)) or not _measured(saved.get(part)):
            continue
        now = r.get(part)
        why = str(now["skipped"]) if isinstance(now, dict) and "skipped" in now else "not in this run's answer"
        first = earlier.get(part) or {"measured_at": saved.get("measured_at"), "measured_on": saved.get("measured_on")}
        r[part] = saved[part]
        carried[part] = {**first, "not_measured_now": why}
    if carried:
        r["carried_over"] = carried
    return r


def _stamp(r: dict[str, Any], when: str, host: dict[str, Any], wall_s: float) -> dict[str, Any]:
    if _per_dataset(r) or not r:
        return r  # quality.json: one entry per dataset, each with its own generated_at
    r["measured_at"], r["measured_on"] = when, host
    r.setdefault("wall_s", wall_s)
    return r


def run(b: Bench, out: Path, host: dict[str, Any]) -> str:
    """Run one benchmark and save its results; returns a one-line status."""
    if b.skip:
        return f"skipped ({b.skip}); its last result is kept"
    when = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    t0 = time.perf_counter()
    proc = subprocess.run(b.argv, capture_output=True, text=True, env={**os.environ, **b.env}, cwd=HERE.parent)
    wall = round(time.perf_counter() - t0, 1)
    result = _last_json(proc.stdout)
    failed = out / f"{b.name}.failed.json"
    broken = _failure(result)
    split = b.split(result) if b.split is not None and result is not None and not broken else None
    if split == {} and "skipped" not in (result or {}):
        broken = f"nothing was measured (no result part in its answer: {', '.join(sorted(result or {}))})"
    if proc.returncode != 0 or result is None or broken or "skipped" in result:
        why = (result or {}).get("skipped") or broken or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        key = "skipped" if result and "skipped" in result else "error"
        failed.write_text(json.dumps({key: str(why)[:2000], "returncode": proc.returncode, "measured_at": when,
                                      "measured_on": host, "wall_s": wall}, indent=1) + "\n")
        return f"{key}: {str(why)[:200]}"
    failed.unlink(missing_ok=True)
    for stem, r in (split or {}).items():
        path = out / f"{stem}.json"
        save_like(path, _stamp(carry_over(r, path, b.parts), when, host, wall))
    for stem in b.own:
        path = out / f"{stem}.json"
        if path.exists() and path.stat().st_mtime >= time.time() - wall - 1:  # written by this run
            own = json.loads(path.read_text())
            if isinstance(own, dict) and own:  # an empty file is never stamped into a result
                save_like(path, _stamp(own, when, host, wall))
    return f"ok in {wall} s"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary-only", action="store_true",
                    help="run nothing: rebuild SUMMARY.md and the README table from the JSON in the results folder")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                    help="short variants, into bench/results/tmp/quick/ (README untouched)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (the table keeps the rest)")
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder (default bench/results, or bench/results/tmp/quick with --quick)")
    ap.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = ap.parse_args(argv)
    out = args.results or (RESULTS / "tmp" / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    status: dict[str, str] = {}
    if not args.summary_only:
        todo = benches(out, args.quick)
        unknown = set(args.only or []) - {b.name for b in todo}
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(b.name for b in todo)}")
        for b in todo:
            if args.only and b.name not in args.only:
                continue
            print(f"[{datetime.now(UTC):%H:%M:%S}] {b.name} ...", file=sys.stderr, flush=True)
            status[b.name] = run(b, out, host)
            print(f"  {status[b.name]}", file=sys.stderr, flush=True)
    stamped = stamp_missing_dates(out)
    if stamped:
        print(f"dated from file times (no measured_at): {', '.join(stamped)}", file=sys.stderr)
    readme = None if args.no_readme or args.quick or args.results else README
    write_summary(out, readme)
    print(json.dumps({"summary": str(out / "SUMMARY.md"), "readme": str(readme) if readme else None,
                      "machine": host, "runs": status}))


if __name__ == "__main__":
    main()
