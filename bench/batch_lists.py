"""Lists for every user written by ``recsys recommend-batch`` against asking the API once per user, same run.

Both rank every stored user anew each round (result cache off; the batch through
``recsys.serving.batch.write_lists`` on one ``Recommender``; the API in-process through ``GET
/v1/users/{id}/recommendations`` with ``Cache-Control: no-cache``, auth and rate limits off, served lists not
recorded), alternating, after a warm-up round of each. Without ``--home`` a demo store
is generated and built first (and removed). Prints one JSON object on the last line::

    python bench/batch_lists.py [--home DIR] [--rounds 3] [--out bench/results/batch_lists.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import exit_if_unusable, generated_demo, require_built  # noqa: E402


def _batch(rec: Any, out: Path) -> tuple[float, int]:
    from recsys.serving.batch import write_lists

    t = time.perf_counter()
    report = write_lists(rec, out, k=20, force=True)
    return time.perf_counter() - t, report.written


def _api(client: Any, users: list[str]) -> tuple[float, int]:
    t = time.perf_counter()
    ok = sum(client.get(f"/v1/users/{u}/recommendations", params={"k": 20},
                        headers={"Cache-Control": "no-cache"}).status_code == 200 for u in users)
    return time.perf_counter() - t, ok


def measure(home: Path, rounds: int) -> dict[str, Any]:
    os.environ.update({"RECSYS_HOME": str(home), "RECSYS_FEEDBACK__RECORD_SERVED": "false",
                       "RECSYS_API__AUTH": "false", "RECSYS_API__RATE_LIMIT_PER_MINUTE": "0",
                       "RECSYS_RANKING__RESULT_CACHE_SIZE": "0"})  # every round ranks every list anew
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from recsys.api import create_app
    from recsys.config import get_settings
    from recsys.service import Recommender
    from recsys.serving.batch import read_user_ids  # noqa: F401  (the module the CLI runs)
    from recsys.store.queries import IS_EVALUATION_USER
    from recsys.store.tables import User

    settings = get_settings()
    rec = Recommender(settings)
    with rec.store.session() as s:
        users = list(s.scalars(select(User.external_id).where(~IS_EVALUATION_USER).order_by(User.external_id)))
    batch_s, api_s = [], []
    with tempfile.TemporaryDirectory(prefix="recsys-batch-") as tmp, TestClient(create_app(settings)) as client:
        out = Path(tmp) / "lists.jsonl"
        for r in range(rounds + 1):  # round 0 warms both (imports, first-sight neighbour lists)
            b, written = _batch(rec, out)
            a, ok = _api(client, users)
            if written != len(users) or ok != len(users):
                raise SystemExit(f"batch_lists.py: {written} lists written and {ok} answered of {len(users)} users")
            if r:
                batch_s.append(b)
                api_s.append(a)
    rec.store.dispose()
    batch_rate, api_rate = len(users) / statistics.median(batch_s), len(users) / statistics.median(api_s)
    return {"bench": "batch_lists", "users": len(users), "rounds": rounds,
            "batch_users_per_s": round(batch_rate, 1), "api_users_per_s": round(api_rate, 1),
            "batch_over_api": round(batch_rate / api_rate, 2),
            "batch_s": [round(x, 3) for x in batch_s], "api_s": [round(x, 3) for x in api_s],
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, help="a built data directory (default: generate and build the demo)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.home is not None:
        home = args.home
        exit_if_unusable(lambda: require_built(home, "--home", os.environ.get("RECSYS_DATABASE_URL")))
        result = measure(home, args.rounds)
    else:
        with generated_demo("batch_lists") as home:
            result = measure(home, args.rounds)
        result["home"] = "a generated demo (removed after the run)"
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
