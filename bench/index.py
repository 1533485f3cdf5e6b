"""Index benchmark: exact, HNSW and IVF-PQ (FAISS, as recsys builds them) side by side with hnswlib.

Synthetic vectors that look like real embeddings rather than uniform noise (see ``clustered``): a Gaussian mixture
of a few thousand centres with Zipf-like cluster sizes, a power-law variance spectrum (anisotropic), per-cluster
per-axis spreads, a shared offset direction (real embeddings all have positive cosine with their mean) and a random
rotation so nothing is axis-aligned; L2-normalised. Queries are fresh draws from the same mixture.

Measured per (n, d): build seconds, bytes per item held in memory, queries/s at k=10 (a batch of ``--nq`` queries per
call, ``--threads`` threads, best of 3) and recall@10 against exact search; HNSW (FAISS and hnswlib, same M and
efConstruction) over a sweep of efSearch; IVF-PQ over nprobe, with and without re-ranking a shortlist of
``--rerank`` candidates from the full vectors in a memory-mapped file on disk (recsys's reader does the same).

    python bench/index.py            # 100k and 1M, d=384 and 512 (~20 min on 2 busy cores)
    python bench/index.py --quick    # 100k only

Prints one JSON object on the last stdout line and writes it to bench/results/index.json (not with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before faiss loads OpenMP (see recsys.index.factory)

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


ONE = 100
"""Queries timed one per call (the online-serving pattern) for the qps_one_query_per_call columns."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def clustered(n: int, d: int, *, centres: int = 4000, seed: int = 0, nq: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(base (n, d), queries (nq, d)) float32, unit norm, from one anisotropic Gaussian mixture (module docstring)."""
    rng = np.random.default_rng(seed)
    spectrum = (np.arange(1, d + 1) ** -0.6).astype(np.float32)
    spectrum /= np.sqrt((spectrum**2).sum())
    centre = rng.standard_normal((centres, d)).astype(np.float32) * spectrum * np.sqrt(d) * 0.8
    spread = (rng.lognormal(0.0, 0.35, (centres, d)) * spectrum * np.sqrt(d) * 0.65).astype(np.float32)
    offset = np.zeros(d, np.float32)
    offset[0] = 0.6 * np.sqrt(d) * float(spectrum.max())
    weights = rng.dirichlet(np.full(centres, 0.7))
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    rot = rot.astype(np.float32)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, d), np.float32)
        for s in range(0, m, 100_000):
            e = min(m, s + 100_000)
            z = rng.choice(centres, e - s, p=weights)
            x = centre[z] + spread[z] * rng.standard_normal((e - s, d), dtype=np.float32) + offset
            x = x @ rot
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(nq)


def recall(got: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(g[:k].tolist()) & set(t[:k].tolist())) / k for g, t in zip(got, truth,
                                                                                              strict=True)]))


def timed(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_exact(faiss: Any, x: np.ndarray, q: np.ndarray, k: int) -> tuple[dict[str, Any], np.ndarray]:
    t = time.perf_counter()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    build = time.perf_counter() - t
    dt, (_, truth) = timed(lambda: index.search(q, k), repeat=1)
    single = q[:20]  # exact is slow one query at a time: 20 are enough to time it
    dt1, _ = timed(lambda: [index.search(single[i:i + 1], k) for i in range(len(single))], repeat=1)
    res = {"build_s": round(build, 2), "bytes_per_item": x.shape[1] * 4, "qps": round(len(q) / dt, 1),
           "qps_one_query_per_call": round(len(single) / dt1, 1), "recall_at_10": 1.0}
    return res, truth


def bench_faiss_hnsw(faiss: Any, x: np.ndarray, q: np.ndarray, truth: np.ndarray, m: int, efc: int,
                     efs: list[int]) -> dict[str, Any]:
    d = x.shape[1]
    index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    t = time.perf_counter()
    index.add(x)
    build = time.perf_counter() - t
    graph = faiss.vector_to_array(index.hnsw.neighbors).nbytes + faiss.vector_to_array(index.hnsw.offsets).nbytes \
        + faiss.vector_to_array(index.hnsw.levels).nbytes
    sweep = []
    for ef in efs:
        p = faiss.SearchParametersHNSW(efSearch=ef)
        dt, (_, got) = timed(lambda p=p: index.search(q, 10, params=p))
        one = q[:ONE]
        dt1, _ = timed(lambda p=p, one=one: [index.search(one[i:i + 1], 10, params=p) for i in range(len(one))])
        sweep.append({"ef_search": ef, "recall_at_10": round(recall(got, truth), 4), "qps": round(len(q) / dt, 1),
                      "qps_one_query_per_call": round(len(one) / dt1, 1)})
    return {"build_s": round(build, 2), "bytes_per_item": round((x.nbytes + graph) / len(x), 1), "M": m,
            "ef_construction": efc, "sweep": sweep}


def bench_hnswlib(x: np.ndarray, q: np.ndarray, truth: np.ndarray, m: int, efc: int, efs: list[int],
                  threads: int) -> dict[str, Any]:
    import hnswlib

    n, d = x.shape
    index = hnswlib.Index(space="ip", dim=d)
    index.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=0)
    t = time.perf_counter()
    index.add_items(x, np.arange(n), num_threads=threads)
    build = time.perf_counter() - t
    sweep = []
    for ef in efs:
        index.set_ef(ef)
        dt, (got, _) = timed(lambda: index.knn_query(q, k=10, num_threads=threads))
        one = q[:ONE]
        dt1, _ = timed(lambda one=one: [index.knn_query(one[i:i + 1], k=10, num_threads=1) for i in range(len(one))])
        sweep.append({"ef_search": ef, "recall_at_10": round(recall(got, truth), 4), "qps": round(len(q) / dt, 1),
                      "qps_one_query_per_call": round(len(one) / dt1, 1)})
    # level-0 element: vector + 2M links + link count + label; upper levels are ~1/M of that in links
    per_item = d * 4 + 2 * m * 4 + 4 + 8 + (m * 4 + 4) / m
    return {"build_s": round(build, 2), "bytes_per_item": round(per_item, 1), "M": m, "ef_construction": efc,
            "sweep": sweep}


def bench_ivfpq(faiss: Any, x: np.ndarray, q: np.ndarray, truth: np.ndarray, nlist: int, pq: str,
                probes: list[int], shortlist: int, train_n: int, prefix: str = "") -> dict[str, Any]:
    from recsys.config import IndexSettings
    from recsys.index.factory import make_index, rerank, search_params

    n, d = x.shape
    factory = f"{prefix + ',' if prefix else ''}IVF{nlist},PQ{pq}"
    m_, _, bits = pq.partition("x")
    code_bytes = int(m_) * int(bits or 8) / 8
    t = time.perf_counter()
    index = make_index(x, factory, IndexSettings(train_sample=train_n))  # recsys's own build path
    build = time.perf_counter() - t
    in_memory = len(faiss.serialize_index(index))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.f32"
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=x.shape)
        mm[:] = x
        mm.flush()
        del mm
        disk = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
        sweep = []
        for nprobe in probes:
            p = search_params(index, None, ef_search=0, nprobe=nprobe)
            dt, (_, got) = timed(lambda p=p: index.search(q, 10, params=p))
            p2 = search_params(index, None, ef_search=0, nprobe=nprobe)

            def reranked(p2: Any = p2) -> np.ndarray:
                _, short = index.search(q, shortlist, params=p2)
                return rerank(disk, q, short, 10)[1]

            dt2, got2 = timed(reranked)
            sweep.append({"nprobe": nprobe, "recall_at_10": round(recall(got, truth), 4), "qps": round(len(q) / dt, 1),
                          "rerank_recall_at_10": round(recall(got2, truth), 4),
                          "rerank_qps": round(len(q) / dt2, 1)})
    return {"factory": factory, "build_s": round(build, 2),
            "bytes_per_item": round(in_memory / n, 1), "code_bytes": code_bytes, "rerank_shortlist": shortlist,
            "full_vectors": "np.memmap on local disk (not counted in bytes_per_item)", "sweep": sweep}


def qps_at(sweep: list[dict[str, Any]], target: float) -> float | None:
    """Queries/s at recall ``target``, interpolated (log qps, linear in recall) between the sweep's bracketing
    points, so two libraries are compared at equal recall rather than at whatever recall an ef happens to give."""
    pts = sorted((s["recall_at_10"], s["qps"]) for s in sweep)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:], strict=False):
        if r0 <= target <= r1:
            t = 0.0 if r1 == r0 else (target - r0) / (r1 - r0)
            return round(float(np.exp(np.log(q0) + t * (np.log(q1) - np.log(q0)))), 1)
    return None


def best_at(sweep: list[dict[str, Any]], target: float, key: str = "recall_at_10",
            qps: str = "qps") -> dict[str, Any] | None:
    ok = [s for s in sweep if s[key] >= target]
    return max(ok, key=lambda s: s[qps]) if ok else None


def run(n: int, d: int, args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(args.threads)
    log(f"n={n} d={d}: generating")
    x, q = clustered(n, d, seed=d, nq=args.nq)
    out: dict[str, Any] = {"n": n, "d": d, "queries": len(q)}
    log("exact")
    out["exact"], truth = bench_exact(faiss, x, q, 10)
    sims = np.sort(q[:200] @ x[: min(n, 200_000)].T, axis=1)
    out["data"] = {"mean_cos_nn1": round(float((q[:200] * x[truth[:200, 0]]).sum(1).mean()), 3),
                   "mean_cos_nn10": round(float((q[:200] * x[truth[:200, 9]]).sum(1).mean()), 3),
                   "mean_cos_random_pair": round(float(sims.mean()), 3)}
    efs = [32, 64, 128, 256, 512]
    if "hnsw" in args.only:
        log("faiss hnsw")
        out["hnsw_faiss"] = bench_faiss_hnsw(faiss, x, q, truth, args.m, args.efc, efs)
        log(f"  {out['hnsw_faiss']['build_s']} s")
        log("hnswlib")
        out["hnswlib"] = bench_hnswlib(x, q, truth, args.m, args.efc, efs, args.threads)
        log(f"  {out['hnswlib']['build_s']} s")
    if "ivfpq" not in args.only:
        return out
    nlist = 1024 if n >= 500_000 else 256
    log("ivf-pq")
    from recsys.index.factory import pq_code

    out["ivfpq"] = bench_ivfpq(faiss, x, q, truth, nlist, args.pq or pq_code(d), [8, 16, 32, 64, 128], args.rerank,
                               args.train, args.ivf_prefix)
    log(f"  {out['ivfpq']['build_s']} s")
    exact_qps = out["exact"]["qps"]
    ivf = out["ivfpq"]
    if "hnsw" not in args.only:
        out["summary"] = {"ivfpq_bytes_per_item": ivf["bytes_per_item"],
                          "ivfpq_best_recall_at_10": max(s["recall_at_10"] for s in ivf["sweep"]),
                          "ivfpq_rerank_at_0.95": best_at(ivf["sweep"], 0.95, "rerank_recall_at_10", "rerank_qps")}
        return out
    hf, hl = best_at(out["hnsw_faiss"]["sweep"], 0.95), best_at(out["hnswlib"]["sweep"], 0.95)
    out["summary"] = {
        "hnsw_faiss_at_0.95": hf, "hnswlib_at_0.95": hl,
        "hnsw_speedup_vs_exact": round(hf["qps"] / exact_qps, 1) if hf else None,
        "hnsw_speedup_vs_exact_one_query_per_call":
            round(hf["qps_one_query_per_call"] / out["exact"]["qps_one_query_per_call"], 1) if hf else None,
        "hnsw_faiss_qps_at_recall_0.95": qps_at(out["hnsw_faiss"]["sweep"], 0.95),
        "hnswlib_qps_at_recall_0.95": qps_at(out["hnswlib"]["sweep"], 0.95),
        "ivfpq_bytes_per_item": ivf["bytes_per_item"],
        "ivfpq_best_recall_at_10": max(s["recall_at_10"] for s in ivf["sweep"]),
        "ivfpq_rerank_at_0.95": best_at(ivf["sweep"], 0.95, "rerank_recall_at_10", "rerank_qps"),
    }
    a, b = out["summary"]["hnsw_faiss_qps_at_recall_0.95"], out["summary"]["hnswlib_qps_at_recall_0.95"]
    out["summary"]["hnsw_faiss_vs_hnswlib_at_equal_recall"] = round(a / b, 2) if a and b else None
    log(json.dumps(out["summary"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k vectors only")
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 512])
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--nq", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--m", type=int, default=16, help="HNSW M (both libraries)")
    ap.add_argument("--efc", type=int, default=64, help="HNSW efConstruction (both libraries)")
    ap.add_argument("--rerank", type=int, default=100, help="IVF-PQ shortlist re-ranked from the memmap")
    ap.add_argument("--train", type=int, default=50_000, help="IVF-PQ training sample")
    ap.add_argument("--pq", default=None, help="PQ layout MxBITS (default: recsys's choice for the dimension)")
    ap.add_argument("--only", nargs="+", default=["hnsw", "ivfpq"], choices=["hnsw", "ivfpq"])
    ap.add_argument("--ivf-prefix", default="", help="transform before IVF-PQ, e.g. OPQ96 (rotation)")
    ap.add_argument("--skip", nargs="*", default=[], help="runs to leave out, as NxD (e.g. 1000000x512)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000])
    started = time.perf_counter()
    load0 = [round(v, 2) for v in os.getloadavg()]
    runs: list[dict[str, Any]] = []
    out = args.out or (None if args.quick else Path(__file__).parent / "results" / "index.json")
    grid = [(n, d) for n in sizes for d in args.dims if f"{n}x{d}" not in args.skip]
    for n, d in grid:
        runs.append(run(n, d, args))
        result = _result(args, runs, started, load0)
        if out:  # after every run, so a long run that gets cut off still leaves its numbers
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(_result(args, runs, started, load0)))


def _result(args: argparse.Namespace, runs: list[dict[str, Any]], started: float,
            load0: list[float]) -> dict[str, Any]:
    result = {
        "benchmark": "index", "k": 10, "threads": args.threads,
        "data": "anisotropic Gaussian mixture: 4000 centres, Dirichlet(0.7) sizes, power-law spectrum (i^-0.6), "
                "lognormal per-cluster per-axis spread, shared offset, random rotation, L2-normalised; queries are "
                "fresh draws",
        "qps_note": "batch of queries per call with the given threads, best of 3; exact qps_one_query_per_call "
                    "is one query per call. The machine is shared: load average given.",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": load0},
        "runs": runs, "total_s": round(time.perf_counter() - started, 1),
    }
    result["machine"]["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]  # type: ignore[index]
    return result


if __name__ == "__main__":
    main()
