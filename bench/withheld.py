"""The withheld-shoppers protocol, end to end through the CLI, exactly as an outside check runs it:

    .venv/bin/python bench/withheld.py [--dataset hm|ml100k] [--part test|validation] [--data-root ../shared/data]
                                       [--out bench/results]

1. The dataset's users are split by the salted hash of ``recsys.evaluation.splits.user_part``; the users of
   ``--part`` are withheld: their interactions go to a file in the dataset's own format, everyone else's to a scratch
   copy of the dataset (catalogue, images and posters linked, not copied).
2. ``recsys import`` + ``recsys build`` on that copy (tower features and fitted heads are reused from
   ``--reuse-home`` when given: they depend on the catalogue only, never on interactions).
3. ``recsys evaluate --test-events FILE --format ... --k 20 --json``: the withheld histories are replayed through
   the ingestion path and every user is ranked through ``Recommender.recommend`` at their target time.

Tune with ``--part validation``; report ``--part test`` once. Prints the evaluation JSON (plus the protocol) as one
JSON object on the last stdout line and writes it to ``--out``/withheld_<dataset>_<part>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import InputError, exit_if_unusable, holds  # noqa: E402

from recsys.evaluation.splits import user_part  # noqa: E402

LAYOUT = {
    "hm": {"events": "transactions.csv", "user_col": "customer_id", "fmt": "hm", "import": "hm",
           "links": ["articles.csv", "customers.csv", "images"]},
    "ml100k": {"events": "u.data", "user_col": 0, "fmt": "movielens", "import": "movielens",
               "links": ["u.item", "u.user", "posters", "details.json", "u.genre", "u.occupation"]},
}


def split_files(src: Path, dst: Path, dataset: str, part: str) -> tuple[Path, int, int]:
    """Write the kept users' interactions into ``dst`` (a linked copy of ``src``) and the withheld ones beside it."""
    lay = LAYOUT[dataset]
    dst.mkdir(parents=True, exist_ok=True)
    for name in lay["links"]:
        if (src / name).exists() and not (dst / name).exists():
            os.symlink((src / name).resolve(), dst / name)
    withheld_path = dst.parent / f"withheld_{lay['events']}"
    kept = held = 0
    with open(src / lay["events"], newline="") as f, open(dst / lay["events"], "w", newline="") as keep, \
            open(withheld_path, "w", newline="") as out:
        if dataset == "hm":
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            wk, wh = csv.DictWriter(keep, fields), csv.DictWriter(out, fields)
            wk.writeheader()
            wh.writeheader()
            for row in reader:
                if user_part(row["customer_id"].strip()) == part:
                    wh.writerow(row)
                    held += 1
                else:
                    wk.writerow(row)
                    kept += 1
        else:
            for line in f:
                if user_part(line.split("\t", 1)[0].strip()) == part:
                    out.write(line)
                    held += 1
                else:
                    keep.write(line)
                    kept += 1
    return withheld_path, kept, held


REUSED = ("cache/features", "encoders")
"""What ``--reuse-home`` gives the build: tower features and fitted heads (they depend on the catalogue only)."""


def check_inputs(args: argparse.Namespace, work: Path) -> None:
    """InputError naming the path and the flag when an input is unusable; run before ``work`` (the previous build)
    is removed, so a typo costs nothing."""
    lay = LAYOUT[args.dataset]
    src = args.data_root / args.dataset
    if not args.data_root.is_dir():
        raise InputError(f"--data-root {args.data_root}: no such folder (it holds hm/ and ml100k/); nothing was "
                         "removed")
    if not (src / lay["events"]).is_file():
        raise InputError(f"--data-root {args.data_root}: no {src / lay['events']} (the {args.dataset} events file); "
                         "nothing was removed")
    if holds(work, src):
        raise InputError(f"--data-root {args.data_root} is inside {work}, which this run replaces; nothing was "
                         "removed")
    if args.reuse_home is None:
        return
    if not args.reuse_home.is_dir():
        raise InputError(f"--reuse-home {args.reuse_home}: no such folder; nothing was removed")
    if not any((args.reuse_home / sub).is_dir() for sub in REUSED):
        raise InputError(f"--reuse-home {args.reuse_home}: neither {' nor '.join(REUSED)} is there (not a home "
                         "where `recsys build` ran); nothing was removed")
    if holds(work, args.reuse_home):
        raise InputError(f"--reuse-home {args.reuse_home} is inside {work}, which this run replaces; copy it "
                         "elsewhere first; nothing was removed")


def recsys(home: Path, *args: str) -> str:
    env = {**os.environ, "RECSYS_HOME": str(home)}
    t0 = time.time()
    cli = Path(sys.executable).parent / "recsys"  # this environment's CLI, wherever it lives
    proc = subprocess.run([str(cli), *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"recsys {' '.join(args)} failed ({proc.returncode})")
    print(f"recsys {' '.join(args)}: {time.time() - t0:.0f}s", file=sys.stderr)
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="hm", choices=sorted(LAYOUT))
    ap.add_argument("--part", default="validation", choices=["validation", "test"])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--scratch", type=Path, default=ROOT / "bench" / "results" / "tmp")
    ap.add_argument("--reuse-home", type=Path, default=None,
                    help="a home built on the same catalogue: its tower-feature cache and fitted heads are copied")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder the JSON is written to")
    args = ap.parse_args()

    work = args.scratch / f"withheld_{args.dataset}_{args.part}"
    exit_if_unusable(lambda: check_inputs(args, work))  # before the previous build is removed
    if work.exists():
        shutil.rmtree(work)
    data, home = work / "data", work / "home"
    withheld, kept, held = split_files(args.data_root / args.dataset, data, args.dataset, args.part)
    if args.reuse_home is not None:
        for sub in REUSED:
            if (args.reuse_home / sub).exists():
                shutil.copytree(args.reuse_home / sub, home / sub)
    lay = LAYOUT[args.dataset]
    recsys(home, "import", lay["import"], str(data))
    recsys(home, "build")
    out = recsys(home, "evaluate", "--test-events", str(withheld), "--format", lay["fmt"], "--k", str(args.k),
                 "--json")
    result = json.loads(out.strip().splitlines()[-1])
    result["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result["protocol_run"] = {"script": "bench/withheld.py", "dataset": args.dataset, "part": args.part,
                              "kept_interactions": kept, "withheld_interactions": held}
    dst = args.out / f"withheld_{args.dataset}_{args.part}.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
