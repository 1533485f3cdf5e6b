"""`make bench`: run every benchmark, keep each JSON in bench/results/, and write bench/results/SUMMARY.md.

Each benchmark prints one JSON object on its last stdout line. A benchmark that fails is recorded with its error
and the others still run. Options are passed through the environment, e.g. BENCH_QUICK=1 for the short variants.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
QUICK = os.environ.get("BENCH_QUICK") == "1"
BENCHES: list[tuple[str, list[str]]] = [
    ("import_speed", []),
    ("encoders", ["--quick"] if QUICK else []),
    ("index", ["--quick"] if QUICK else []),
    ("quality", []),
    ("api_load", ["--soak-seconds", "30"] if QUICK else []),
]


def run(name: str, args: list[str]) -> dict[str, Any]:
    script = HERE / f"{name}.py"
    if not script.exists():
        return {"error": f"{script.name} missing"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        out = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        out = {}
    if proc.returncode != 0 or not out:
        out = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], "returncode": proc.returncode}
    out.setdefault("wall_s", round(time.perf_counter() - t0, 1))
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()})"
    lines = ["# Benchmark summary", "", f"Machine: {machine}  ", f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             "| benchmark | status | wall s | headline |", "|---|---|---|---|"]
    for name, args in BENCHES:
        out = run(name, args)
        status = "error: " + str(out["error"])[:80] if "error" in out else "ok"
        headline = {k: v for k, v in out.items() if isinstance(v, int | float) and k != "wall_s"}
        lines.append(f"| {name} | {status} | {out.get('wall_s')} | {json.dumps(headline)[:160]} |")
    (RESULTS / "SUMMARY.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({"summary": str(RESULTS / "SUMMARY.md"), "machine": machine}))


if __name__ == "__main__":
    main()
