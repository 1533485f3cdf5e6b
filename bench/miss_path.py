"""Ranking a miss: the CPU an uncached recommendation costs in-process, by stage, with the reference paths measured on
the same requests in the same run.

1. The served path: ``Recommender.recommend(user, fresh=True)`` for the store's users in turn (the result cache
   bypassed, as ``Cache-Control: no-cache``), one thread for torch, FAISS and BLAS as the server runs it: CPU ms per
   request and the median of each stage (``debug`` timings); ``first_pass`` is each user's first request, when the
   kept neighbour lists of the items met are still being computed on first sight; ``computed_ahead`` the same first
   requests of a fresh service after the server's background step computed every list (and its CPU seconds).
2. Scoring the same prepared requests three ways: the numpy forward one request at a time (served), the torch
   network one request at a time (the previous serving path) and torch over batches of 16 (what micro-batching the
   forward could reach at best), with the largest score difference to torch.
3. The ``similar`` source from kept neighbour lists (served) against the exact product over the catalogue: ms per
   request and the share of requests whose lists agree (up to float rounding, see recsys/ranking/neighbours.py).
4. The interest queries' vector search one request at a time (served) against 16 requests' queries in one call.

Micro-batching (ranking requests that arrive together in one call) would pay off only where one call for many
requests is cheaper per request than one each: 2 and 4 measure exactly that for the two batchable stages.

Without ``--home`` a demo store is generated and built first. Prints one JSON object on the last line.

    python bench/miss_path.py [--home DIR] [--requests 600] [--out bench/results/miss_path.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _homes import exit_if_unusable, generated_demo, require_built  # noqa: E402


def one_thread() -> None:
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    threadpool_limits(limits=1)


def served_path(rec: Any, users: list[str], n: int) -> dict[str, Any]:
    """Two passes: the first request of each user (the kept neighbour lists of the items met are computed on first
    sight, as after a new generation), then ``n`` requests cycling over the users with the lists in place."""
    from recsys.serving.requests import ListRequest
    from recsys.serving.rules import NO_RULES

    def run(who: list[str]) -> dict[str, Any]:
        stages: dict[str, list[float]] = {}
        c0, w0 = time.process_time(), time.perf_counter()
        for u in who:
            _, timings = rec._recommend(ListRequest(u, 20, None, (), None, False, True, None, NO_RULES))
            for k, v in timings.items():
                stages.setdefault(k, []).append(v)
        return {"requests": len(who), "cpu_ms_per_request": round((time.process_time() - c0) / len(who) * 1000, 3),
                "wall_ms_per_request": round((time.perf_counter() - w0) / len(who) * 1000, 3),
                "stage_median_ms": {k: round(statistics.median(v), 3) for k, v in stages.items()}}

    rec.recommend("recsys-bench-unknown-user", k=20)  # loads the generations
    first = run(users)
    return {**(run([users[i % len(users)] for i in range(n)]) if n else {}), "first_pass": first}


def warmed_first_pass(users: list[str]) -> dict[str, Any]:
    """A server's first requests after a new generation once its neighbour lists are computed ahead (the refresh
    round's background thread, ``ranking.warm_lists_max``): a fresh service, the lists computed, then each user's
    first request; with the CPU seconds the lists took."""
    from recsys.service import Recommender

    rec = Recommender()
    rec.recommend("recsys-bench-unknown-user", k=20)
    c0 = time.process_time()
    made = rec.generations.warm_lists()
    spent = time.process_time() - c0
    first = served_path(rec, users, 0)["first_pass"]
    rec.store.dispose()
    return {"lists": made, "cpu_s": round(spent, 2), "first_pass": first}


def prepared_requests(rec: Any, users: list[str]) -> tuple[Any, list[Any], list[Any]]:
    """(ranker, [(request, candidates, example)], [latest distinct rows per request]) for the users."""
    from recsys.ranking.lists import ListPolicy
    from recsys.ranking.pipeline import _Request
    from recsys.serving.requests import history_as_of
    from recsys.store.queries import user_event_records

    served = rec.generations.current()
    ranker = served.ranker
    out, latest = [], []
    for u in users:
        with rec.store.reading() as c:
            records = user_event_records(c, u)
        h, now = history_as_of(records, ranker.table, rec.clock(served), False)
        r = _Request(h, now, 20, set(), None, 0.0, False, None, ListPolicy())
        cands, ex = ranker._prepare(r)
        out.append((r, cands, ex))
        rev = h.rows[::-1]
        _, first = np.unique(rev, return_index=True)
        latest.append(rev[np.sort(first)][: ranker.params.similar_last])
    return ranker, out, latest


def per_request_ms(fn: Any, items: list[Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, (time.perf_counter() - t) / len(items) * 1000)
    return round(best, 4)


def scoring(ranker: Any, prepared: list[Any]) -> dict[str, Any]:
    ex = [e for _, _, e in prepared]
    ca = [c for _, c, _ in prepared]
    out: dict[str, Any] = {"requests": len(ex), "mean_candidates": round(float(np.mean([len(c) for c in ca])), 1)}
    if ranker.net is None or ranker._forward is None:
        return {**out, "skipped": "the ranker has no numpy forward (deep pathway or no network)"}
    pairs = list(zip(ex, ca, strict=True))
    out["numpy_one_ms"] = per_request_ms(lambda p: ranker.scores([p[0]], [p[1]], "numpy"), pairs)
    out["torch_one_ms"] = per_request_ms(lambda p: ranker.scores([p[0]], [p[1]], "torch"), pairs)
    batches = [(ex[i: i + 16], ca[i: i + 16]) for i in range(0, len(ex), 16)]
    out["torch_batch16_ms"] = round(per_request_ms(lambda b: ranker.scores(b[0], b[1], "torch"), batches) *
                                    len(batches) / len(ex), 4)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ranker.scores(ex, ca, "numpy"),
                                                            ranker.scores(ex, ca, "torch"), strict=True) if len(a))
    out["max_abs_score_difference"] = diff
    out["speedup_numpy_vs_torch_one"] = round(out["torch_one_ms"] / out["numpy_one_ms"], 2)
    return out


def similar_source(ranker: Any, latest: list[np.ndarray]) -> dict[str, Any]:
    from recsys.ranking.neighbours import top_k

    gen, p = ranker._gen, ranker.params
    c = ranker.table.content
    k = p.similar_k
    lat = [x for x in latest if len(x)]
    for x in lat:  # the first request for an item computes its list: measured apart
        gen.similar(x, k)

    def exact(x: np.ndarray) -> np.ndarray:
        return top_k((c[x] @ c.T).max(axis=0), k)

    same = 0
    for x in lat:
        a, b = gen.similar(x, k), exact(x)
        best = (c[x] @ c.T).max(axis=0)
        same += bool(len(a) == len(b) and np.allclose(best[a], best[b], atol=1e-6))
    kept, ex = per_request_ms(lambda x: gen.similar(x, k), lat), per_request_ms(exact, lat)
    return {"requests": len(lat), "items": int(c.shape[0]), "kept_lists_ms": kept, "exact_product_ms": ex,
            "speedup": round(ex / kept, 2) if kept else None, "share_same_list": round(same / max(len(lat), 1), 4)}


def search_batching(ranker: Any, prepared: list[Any]) -> dict[str, Any]:
    """The interest queries (k-means centres of the recent history) searched per request, as served, against 16
    requests' queries in one search: what micro-batching the vector search could save."""
    from recsys.ranking.candidates import kmeans
    from recsys.ranking.context import make_context

    t, p = ranker.table, ranker.params
    cents = []
    for r, _, _ in prepared:
        if len(r.history):
            ctx = make_context(r.history, r.now, ranker.stats, p)
            cents.append(kmeans(t.fused[ctx.recent_rows], p.interests, ctx.recent_w))
    kk = max(p.interest_k, p.content_k)
    search = ranker._search
    one = per_request_ms(lambda q: search.search(q, kk, set()), cents)
    groups = [np.vstack(cents[i: i + 16]) for i in range(0, len(cents), 16)]
    batch = per_request_ms(lambda q: search.search(q, kk, set()), groups) * len(groups) / max(len(cents), 1)
    return {"requests": len(cents), "queries_per_request": round(float(np.mean([len(c) for c in cents])), 2),
            "one_request_ms": one, "batch16_ms_per_request": round(batch, 4), "index": type(search).__name__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, help="a built data directory (default: generate and build the demo)")
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--users", type=int, default=300, help="distinct users the requests cycle over")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    home = args.home
    if home is not None:  # checked before anything opens it (which would create an empty store there)
        exit_if_unusable(lambda: require_built(home, "--home", os.environ.get("RECSYS_DATABASE_URL")))
        result = measure(home, args)
    else:  # the generated demo (~190 MB) is removed afterwards, whatever happens
        with generated_demo("miss_path") as home:
            result = measure(home, args)
        result["home"] = "a generated demo (removed after the run)"
    line = json.dumps(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(line)


def measure(home: Path, args: argparse.Namespace) -> dict[str, Any]:
    os.environ["RECSYS_HOME"] = str(home)
    from sqlalchemy import select

    from recsys.service import Recommender
    from recsys.store.tables import User

    one_thread()
    rec = Recommender()
    with rec.store.session() as s:
        users = list(s.scalars(select(User.external_id).order_by(User.id).limit(args.users)))
    result: dict[str, Any] = {"bench": "miss_path", "home": str(home), "users": len(users),
                              "served": served_path(rec, users, args.requests),
                              "computed_ahead": warmed_first_pass(users)}
    ranker, prepared, latest = prepared_requests(rec, users)
    result["items"] = ranker.table.n
    result["scoring"] = scoring(ranker, prepared)
    result["similar"] = similar_source(ranker, latest)
    result["search_batching"] = search_batching(ranker, prepared)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rec.store.dispose()
    return result


if __name__ == "__main__":
    main()
