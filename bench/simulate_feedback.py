"""The feedback loop, simulated end to end: does an experiment's report find a worse variant, and only then?

A small demo store is generated, imported and built (or ``--home`` names one built from the same demo). The real
API (``create_app`` over a real :class:`recsys.service.Recommender`) is served by uvicorn in this process on a free
loopback port and driven over HTTP: every demo user asks for personal lists; the client posts an impression for
every item shown and draws clicks from the user's true taste (the demo generator's hidden ``affinity``, in [0, 4]):
P(click) = 0.3 * (affinity / 4)^2 / (1 + 0.1 * position), and a purchase follows a click with probability 0.2.
Every event carries the list's ``recommendation_id`` and position.

Runs: one A/B experiment whose treatment serves popularity alone (``source: popular``, known worse than the
personal ranker), then ``--aa-runs`` A/A experiments (two identical variants, a new salt each). After each run the
server is stopped (the served-list writer flushes) and ``experiment_report`` is read from the store; its counts are
checked against the events sent, per variant. Each A/A run's users are also split again at random ``--resplits``
times (the variants were identical, so every split is a draw of the null): a finer false-positive rate than 20 runs
give. Prints one JSON object.

    python bench/simulate_feedback.py [--home DIR] [--items 300 --users 100] [--ab-lists 8] [--lists 3]
                                      [--aa-runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import exit_if_unusable, require_built  # noqa: E402

from recsys.config import ExperimentsSettings, Settings  # noqa: E402

SEED = 0


def settings_for(home: Path, experiments: list[dict[str, Any]] | None = None) -> Settings:
    s = Settings(home=home)
    s.api = s.api.model_copy(update={"auth": False, "rate_limit_per_minute": 0})
    s.experiments = ExperimentsSettings(definitions=experiments or [])
    return s


def build(home: Path, demo: Path, items: int, users: int) -> None:
    """Generate, import and build the demo store in ``home`` (from ``demo``)."""
    from recsys.demo import generate_demo
    from recsys.service import Recommender
    from recsys.store import Store
    from recsys.store.importers import run_import

    generate_demo(demo, n_items=items, n_users=users, seed=SEED)
    settings = settings_for(home)
    store = Store.open(settings)
    try:
        for kind in ("items", "users", "events"):
            run_import(store, kind, demo / f"{kind}.jsonl", settings=settings)
        Recommender(settings, store).jobs.build()
    finally:
        store.dispose()


def taste(items: int, users: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo's hidden truth: users (with ``affinity``) and items by id, regenerated from the seed."""
    from recsys.demo.behaviour import make_users
    from recsys.demo.catalog import make_catalog

    catalog = make_catalog(items, SEED)
    return {u.user_id: u for u in make_users(users, catalog, SEED)}, {it.item_id: it for it in catalog}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(rec: Any, settings: Settings) -> Iterator[str]:
    """The API over ``rec`` under uvicorn in a thread; its base URL. Leaving stops it (the writer flushes)."""
    import uvicorn

    from recsys.api import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, rec), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def p_click(affinity: float, position: int) -> float:
    return 0.3 * (affinity / 4.0) ** 2 / (1.0 + 0.1 * position)


def traffic(base: str, users: dict[str, Any], items: dict[str, Any], lists: int, k: int,
            rng: random.Random) -> dict[str, Counter[str]]:
    """Every user asks for ``lists`` lists; impressions, clicks and purchases posted. Counts sent per variant."""
    sent: dict[str, Counter[str]] = defaultdict(Counter)
    order = list(users)
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(lists):
            rng.shuffle(order)
            for uid in order:
                r = client.get(f"/v1/users/{uid}/recommendations", params={"k": k})
                r.raise_for_status()
                body = r.json()
                meta, shown = body["meta"], [it["item_id"] for it in body["items"]]
                c = sent[meta.get("variant") or ""]
                c["lists"] += 1
                events: list[dict[str, Any]] = []
                for pos, item_id in enumerate(shown):
                    ev = {"user_id": uid, "item_id": item_id, "recommendation_id": meta["recommendation_id"],
                          "position": pos}
                    events.append({**ev, "type": "impression"})
                    if rng.random() < p_click(users[uid].affinity(items[item_id]), pos):
                        events.append({**ev, "type": "click"})
                        c["clicks"] += 1
                        if rng.random() < 0.2:
                            events.append({**ev, "type": "purchase"})
                            c["conversions"] += 1
                c["impressions"] += len(shown)
                posted = client.post("/v1/events", json={"events": events})
                posted.raise_for_status()
                if posted.json()["errors"]:
                    raise RuntimeError(f"events refused: {posted.text[:500]}")
    return sent


def run_experiment(rec: Any, home: Path, exp: dict[str, Any], truth: tuple[dict[str, Any], dict[str, Any]],
                   lists: int, k: int, rng: random.Random) -> dict[str, Any]:
    """Serve ``exp``, drive its traffic, and read its report; the report's counts are checked against the sent."""
    from recsys.experiments import experiment_report, load_experiments

    settings = settings_for(home, [exp])
    with serving(rec, settings) as base:
        sent = traffic(base, *truth, lists, k, rng)
    report = experiment_report(rec.store, load_experiments(settings).get(exp["name"]))
    fields = ("lists", "impressions", "clicks", "conversions")
    exact = all(v[f] == sent[v["name"]][f] for v in report["variants"] for f in fields) and \
        set(sent) == {v["name"] for v in report["variants"]}
    return {"report": report, "counts_match": exact}


def resplit_p_values(rec: Any, name: str, splits: int, seed: int) -> list[tuple[float, float]]:
    """(clustered, unclustered) CTR p-values of ``splits`` fresh random halvings of an A/A run's users: its two
    variants served the same lists, so any split is another draw of the null (a re-randomisation test)."""
    import numpy as np

    from recsys.experiments.report import _per_user, compare

    users: dict[str, list[int]] = {}
    for rows in _per_user(rec.store, name).values():
        for uid, c in rows.items():
            users[uid] = [c["clicks"], c["impressions"]]
    counts = np.array(list(users.values()), dtype=float)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        half = rng.permutation(len(counts)) < len(counts) // 2
        cmp = compare((counts[half, 0], counts[half, 1]), (counts[~half, 0], counts[~half, 1]))
        out.append((cmp["p_value"], cmp["p_value_unclustered"]))
    return out


def summary(out: dict[str, Any]) -> dict[str, Any]:
    r = out["report"]
    rows = {}
    for v in r["variants"]:
        cmp = (v.get("vs_control") or {}).get("ctr") or {}
        rows[v["name"]] = {"users": v["users"], "lists": v["lists"], "impressions": v["impressions"],
                           "clicks": v["clicks"], "conversions": v["conversions"],
                           "ctr": v["ctr"], "p_value": cmp.get("p_value"),
                           "p_value_unclustered": cmp.get("p_value_unclustered"),
                           "conversion_p_value": ((v.get("vs_control") or {}).get("conversion_rate") or {})
                           .get("p_value")}
    return {"variants": rows, "counts_match": out["counts_match"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="a data directory built from the same demo (default: build one)")
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--lists", type=int, default=3, help="lists per user per A/A run")
    ap.add_argument("--ab-lists", type=int, default=8, help="lists per user in the A/B run")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--aa-runs", type=int, default=20)
    ap.add_argument("--alpha", type=float, default=0.05,
                    help="significance level: the A/B run's worse variant found, and the A/A false positives")
    ap.add_argument("--resplits", type=int, default=100,
                    help="random re-splits of each A/A run's users (a finer false-positive rate)")
    args = ap.parse_args()
    if args.home is not None:  # checked before anything opens it (which would create and migrate a store there)
        exit_if_unusable(lambda: require_built(args.home, "--home", os.environ.get("RECSYS_DATABASE_URL")))
    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="recsys-simulate-")
    home = args.home
    if home is None:
        home = Path(tmp.name) / "home"
        build(home, Path(tmp.name) / "demo", args.items, args.users)
    build_s = time.perf_counter() - t0
    from recsys.service import Recommender

    rec = Recommender(settings_for(home))
    truth = taste(args.items, args.users)
    rng = random.Random(SEED)
    ab = run_experiment(rec, home, {"name": "ranker-vs-popular", "variants": [
        {"name": "control", "share": 0.5}, {"name": "popular", "share": 0.5, "source": "popular"}]},
        truth, args.ab_lists, args.k, rng)
    aa = [run_experiment(rec, home, {"name": f"aa-{i}", "variants": [
        {"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]}, truth, args.lists, args.k, rng)
        for i in range(args.aa_runs)]
    resplit = [p for i in range(args.aa_runs) for p in resplit_p_values(rec, f"aa-{i}", args.resplits, i)]
    ps = [summary(r)["variants"]["b"]["p_value"] for r in aa]
    pu = [summary(r)["variants"]["b"]["p_value_unclustered"] for r in aa]
    worse = summary(ab)["variants"]["popular"]
    rec.store.dispose()
    tmp.cleanup()
    print(json.dumps({
        "items": args.items, "users": args.users, "lists_per_user": {"ab": args.ab_lists, "aa": args.lists},
        "k": args.k,
        "click_model": "0.3 * (affinity/4)^2 / (1 + 0.1 * position); purchase 0.2 of clicks",
        "ab": {**summary(ab), "alpha": args.alpha,
               "worse_detected": worse["p_value"] is not None and worse["p_value"] < args.alpha},
        "aa": {"runs": len(aa), "alpha": args.alpha,
               "false_positives": sum(p is not None and p < args.alpha for p in ps),
               "false_positives_unclustered": sum(p is not None and p < args.alpha for p in pu),
               "p_values": [round(p, 4) if p is not None else None for p in ps],
               "counts_match": all(r["counts_match"] for r in aa),
               "resplits": len(resplit),
               "resplit_false_positive_rate": round(sum(p < args.alpha for p, _ in resplit) / len(resplit), 4),
               "resplit_false_positive_rate_unclustered": round(sum(q < args.alpha for _, q in resplit)
                                                                / len(resplit), 4)},
        "build_s": round(build_s, 1), "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
