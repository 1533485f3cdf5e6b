"""Index benchmark: exact, HNSW and IVF-PQ (FAISS, as recsys builds them) side by side with hnswlib.

Synthetic vectors that look like real embeddings rather than uniform noise (see ``Mixture``): a Gaussian mixture
of a few thousand centres with Zipf-like cluster sizes, a power-law variance spectrum (anisotropic), per-cluster
per-axis spreads, a shared offset direction (real embeddings all have positive cosine with their mean) and a random
rotation so nothing is axis-aligned; L2-normalised. Queries are fresh draws from the same mixture.

Measured per (n, d): build seconds, bytes per item held in memory, queries/s at k=10 and recall@10 against exact
search. Two query patterns: a batch of ``--nq`` queries per call on ``--threads`` threads (best of 3), and one query
per call on one thread (the online-serving pattern). HNSW (FAISS and hnswlib, same M and efConstruction; FAISS laid
out in graph order as recsys stores it) over a sweep of efSearch, the two libraries timed in turn at each point
(best of 5); IVF-PQ (recsys's layout for the size, or one or more ``--ivf-factory``) over nprobe, with and without
re-ranking a shortlist of ``--rerank`` candidates from the full vectors in a memory-mapped file on disk (recsys's
reader does the same).

From 5M vectors (``--sizes 10000000``) the run streams instead (``run_large``): vectors are drawn in seeded chunks
into a float16 file on disk (never all in memory), the exact top-10 of ``--nq-large`` queries comes from a chunked
scan of that file, IVF-PQ is trained on a ``--train-large`` sample and filled chunk by chunk; peak RSS is reported.

    python bench/index.py                       # 100k and 1M, d=384 and 512
    python bench/index.py --quick               # 100k only, nothing written
    python bench/index.py --sizes 10000000 --dims 384 --only ivfpq --ivf-factory OPQ96,IVF4096,PQ96x7 OPQ96,IVF4096,PQ96

Prints one JSON object on the last stdout line and merges its runs, by (n, d), into bench/results/index.json
(not with --quick; ``--out`` to choose the file). Each run records its own date and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before faiss loads OpenMP (see recsys.index.factory)

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


ONE = 200
"""Queries timed one per call (the online-serving pattern) for the qps_one_query_per_call columns."""
EXACT_REPEAT = 3
"""Exact search is timed best of this many, batched and one query per call alike (HNSW: best of 5)."""
EXACT_ONE = 20
"""Queries exact search answers one per call (slow one at a time: enough to time it)."""
LARGE = 5_000_000
"""From this size the run streams (``run_large``)."""
QPS_NOTE = (
    "qps: a batch of queries per call on the given threads; qps_one_query_per_call: one query per call on one thread. "
    "HNSW: both libraries built first, then timed in turn at each efSearch, best of 5; IVF-PQ: best of 3; exact: as "
    f"the run's exact.timing says (best of {EXACT_REPEAT}, one query per call on its first {EXACT_ONE} queries). Runs "
    "without exact.timing (bench/index.py before 2026-12-06) timed exact search best of 2 batched and once one query "
    "per call (on its first 20 queries), so their speed-ups over exact set one exact pass against HNSW's best of 5. "
    "Streamed runs time each once (exact: one chunked scan). Speed-ups are at recall@10 0.95, interpolated between "
    "sweep points. Each run gives its load average.")
"""Kept in the results file for every run merged into it: what a run without its own timing record used."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Mixture:
    """An anisotropic Gaussian mixture of ``centres`` clusters in ``d`` dimensions (module docstring)."""

    def __init__(self, d: int, *, centres: int = 4000, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        spectrum = (np.arange(1, d + 1) ** -0.6).astype(np.float32)
        spectrum /= np.sqrt((spectrum**2).sum())
        self.centre = rng.standard_normal((centres, d)).astype(np.float32) * spectrum * np.sqrt(d) * 0.8
        self.spread = (rng.lognormal(0.0, 0.35, (centres, d)) * spectrum * np.sqrt(d) * 0.65).astype(np.float32)
        self.offset = np.zeros(d, np.float32)
        self.offset[0] = 0.6 * np.sqrt(d) * float(spectrum.max())
        self.weights = rng.dirichlet(np.full(centres, 0.7))
        rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
        self.rot = rot.astype(np.float32)
        self.rng = rng
        self.seed = seed

    def draw(self, m: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """(m, d) float32 unit vectors, from ``rng`` (default: the mixture's own stream)."""
        rng = rng or self.rng
        d, step = len(self.offset), 50_000
        out = np.empty((m, d), np.float32)
        x, c = np.empty((min(m, step), d), np.float32), np.empty((min(m, step), d), np.float32)
        shifted = (self.centre + self.offset).astype(np.float32)
        for s in range(0, m, step):  # in place, in reused buffers: fresh pages are slow on a busy VM
            e = min(m, s + step)
            z = rng.choice(len(self.weights), e - s, p=self.weights)
            g = rng.standard_normal((e - s, d), dtype=np.float32)
            np.take(self.spread, z, axis=0, out=x[:e - s])
            x[:e - s] *= g
            x[:e - s] += np.take(shifted, z, axis=0, out=c[:e - s])
            np.matmul(x[:e - s], self.rot, out=out[s:e])
            out[s:e] /= np.linalg.norm(out[s:e], axis=1, keepdims=True)
        return out

    def chunk(self, i: int, m: int) -> np.ndarray:
        """Chunk ``i`` of a streamed catalogue: its own seeded stream, so chunks never need to be held together."""
        return self.draw(m, np.random.default_rng([self.seed, i]))


def clustered(n: int, d: int, *, centres: int = 4000, seed: int = 0, nq: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(base (n, d), queries (nq, d)) float32, unit norm, from one ``Mixture``."""
    mix = Mixture(d, centres=centres, seed=seed)
    return mix.draw(n), mix.draw(nq)


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


def one_by_one(faiss: Any, threads: int, search: Any, q: np.ndarray, repeat: int = 3) -> float:
    """Queries/s answering ``q`` one query per call on one thread (OpenMP start-up would dominate a single query)."""
    faiss.omp_set_num_threads(1)
    try:
        dt, _ = timed(lambda: [search(q[i:i + 1]) for i in range(len(q))], repeat)
    finally:
        faiss.omp_set_num_threads(threads)
    return round(len(q) / dt, 1)


def index_bytes(faiss: Any, index: Any, scratch: Path) -> int:
    """Size of the index as FAISS holds it (codes, ids, lists, quantizer, transforms), via a file: no RAM copy."""
    path = scratch / "size.faiss"
    faiss.write_index(index, str(path))
    size = path.stat().st_size
    path.unlink()
    return size


def bench_exact(faiss: Any, x: np.ndarray, q: np.ndarray, k: int, threads: int) -> tuple[dict[str, Any], np.ndarray]:
    t = time.perf_counter()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    build = time.perf_counter() - t
    dt, (_, truth) = timed(lambda: index.search(q, k), repeat=EXACT_REPEAT)
    single = q[:EXACT_ONE]
    res = {"build_s": round(build, 2), "bytes_per_item": x.shape[1] * 4, "qps": round(len(q) / dt, 1),
           "qps_one_query_per_call": one_by_one(faiss, threads, lambda v: index.search(v, k), single, EXACT_REPEAT),
           "recall_at_10": 1.0, "timing": f"best of {EXACT_REPEAT} (one query per call: the first {EXACT_ONE} "
                                          "queries)"}
    return res, truth


def build_faiss_hnsw(faiss: Any, x: np.ndarray, m: int, efc: int) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """recsys's HNSW: built, then laid out in graph order (returned: position i holds vector ``order[i]``)."""
    from recsys.index.factory import graph_order, relayout

    index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    t = time.perf_counter()
    index.add(x)
    order = graph_order(index)
    relayout(index, order)
    build = time.perf_counter() - t
    graph = faiss.vector_to_array(index.hnsw.neighbors).nbytes + faiss.vector_to_array(index.hnsw.offsets).nbytes \
        + faiss.vector_to_array(index.hnsw.levels).nbytes
    return index, order, {"build_s": round(build, 2), "bytes_per_item": round((x.nbytes + graph) / len(x), 1),
                          "M": m, "ef_construction": efc, "layout": "graph order (breadth-first, base layer)"}


def build_hnswlib(x: np.ndarray, m: int, efc: int, threads: int) -> tuple[Any, dict[str, Any]]:
    import hnswlib

    n, d = x.shape
    index = hnswlib.Index(space="ip", dim=d)
    index.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=0)
    t = time.perf_counter()
    index.add_items(x, np.arange(n), num_threads=threads)
    build = time.perf_counter() - t
    # level-0 element: vector + 2M links + link count + label; upper levels are ~1/M of that in links
    per_item = d * 4 + 2 * m * 4 + 4 + 8 + (m * 4 + 4) / m
    return index, {"build_s": round(build, 2), "bytes_per_item": round(per_item, 1), "M": m, "ef_construction": efc}


def hnsw_sweeps(faiss: Any, fidx: Any, order: np.ndarray, hidx: Any, q: np.ndarray, truth: np.ndarray,
                efs: list[int], threads: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both libraries timed at each efSearch in turn (FAISS, hnswlib, FAISS, ...), best of 5, so a slow spell
    on the shared machine lands on both rather than on whichever library ran during it."""
    one = q[:ONE]
    fs, hs = [], []
    for ef in efs:
        p = faiss.SearchParametersHNSW(efSearch=ef)
        hidx.set_ef(ef)
        fb, hb, f1, h1 = [float("inf")] * 4
        for _ in range(5):
            dt, (_, fgot) = timed(lambda p=p: fidx.search(q, 10, params=p), 1)
            fb = min(fb, dt)
            dt, (hgot, _) = timed(lambda: hidx.knn_query(q, k=10, num_threads=threads), 1)
            hb = min(hb, dt)
            f1 = min(f1, len(one) / one_by_one(faiss, threads, lambda v, p=p: fidx.search(v, 10, params=p), one, 1))
            dt, _ = timed(lambda: [hidx.knn_query(one[i:i + 1], k=10, num_threads=1) for i in range(len(one))], 1)
            h1 = min(h1, dt)
        fs.append({"ef_search": ef, "recall_at_10": round(recall(order[fgot], truth), 4), "qps": round(len(q) / fb, 1),
                   "qps_one_query_per_call": round(len(one) / f1, 1)})
        hs.append({"ef_search": ef, "recall_at_10": round(recall(hgot, truth), 4), "qps": round(len(q) / hb, 1),
                   "qps_one_query_per_call": round(len(one) / h1, 1)})
    return fs, hs


def ivf_sweep(faiss: Any, index: Any, q: np.ndarray, truth: np.ndarray, full: Any, probes: list[int],
              shortlist: int, threads: int, repeat: int = 3) -> list[dict[str, Any]]:
    """recall@10 and queries/s per nprobe, raw and with the shortlist re-ranked from ``full`` (a memmap)."""
    from recsys.index.factory import rerank, search_params

    sweep = []
    for nprobe in probes:
        p = search_params(index, None, ef_search=0, nprobe=nprobe)
        dt, (_, got) = timed(lambda p=p: index.search(q, 10, params=p), repeat)

        def reranked(v: np.ndarray, p: Any = p) -> np.ndarray:
            _, short = index.search(v, shortlist, params=p)
            return rerank(full, v, short, 10)[1]

        dt2, got2 = timed(lambda: reranked(q), repeat)
        sweep.append({"nprobe": nprobe, "recall_at_10": round(recall(got, truth), 4), "qps": round(len(q) / dt, 1),
                      "rerank_recall_at_10": round(recall(got2, truth), 4), "rerank_qps": round(len(q) / dt2, 1),
                      "rerank_qps_one_query_per_call": one_by_one(faiss, threads, reranked, q[:ONE], repeat)})
    return sweep


def ivf_factories(n: int, d: int, args: argparse.Namespace, train: int) -> list[str]:
    """``--ivf-factory`` (one or more, measured in turn on the same vectors) or recsys's own choice for n, d."""
    from recsys.config import IndexSettings
    from recsys.index.factory import choose_factory

    return args.ivf_factory or [choose_factory(n, d, IndexSettings(exact_threshold=0, ivf_threshold=0,
                                                                   train_sample=train))]


def with_ivfpq(out: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The first layout is the run's ``ivfpq``; further ones go to ``ivfpq_variants``. Returns summary entries."""
    out["ivfpq"] = results[0]
    summary = ivfpq_summary(results[0])
    if len(results) > 1:
        out["ivfpq_variants"] = results[1:]
        summary["ivfpq_variants"] = [ivfpq_summary(r) for r in results[1:]]
    return summary


def bench_ivfpq(faiss: Any, x: np.ndarray, q: np.ndarray, truth: np.ndarray, factory: str, probes: list[int],
                args: argparse.Namespace) -> dict[str, Any]:
    from recsys.config import IndexSettings
    from recsys.index.factory import make_index

    n, d = x.shape
    t = time.perf_counter()
    index = make_index(x, factory, IndexSettings(train_sample=args.train))  # recsys's own build path
    build = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        in_memory = index_bytes(faiss, index, Path(tmp))
        path = Path(tmp) / "vectors.f32"
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=x.shape)
        mm[:] = x
        mm.flush()
        del mm
        disk = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
        sweep = ivf_sweep(faiss, index, q, truth, disk, probes, args.rerank, args.threads)
    return {"factory": factory, "build_s": round(build, 2), "train_sample": min(n, args.train),
            "bytes_per_item": round(in_memory / n, 1), "rerank_shortlist": args.rerank,
            "full_vectors": "float32 np.memmap on local disk (not counted in bytes_per_item)", "sweep": sweep}


def qps_at(sweep: list[dict[str, Any]], target: float, key: str = "recall_at_10", qps: str = "qps") -> float | None:
    """Queries/s at recall ``target``, interpolated (log qps, linear in recall) between the sweep's bracketing
    points, so two libraries are compared at equal recall rather than at whatever recall an ef happens to give."""
    pts = sorted((s[key], s[qps]) for s in sweep)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:], strict=False):
        if r0 <= target <= r1:
            t = 0.0 if r1 == r0 else (target - r0) / (r1 - r0)
            return round(float(np.exp(np.log(q0) + t * (np.log(q1) - np.log(q0)))), 1)
    return None


def best_at(sweep: list[dict[str, Any]], target: float, key: str = "recall_at_10",
            qps: str = "qps") -> dict[str, Any] | None:
    ok = [s for s in sweep if s[key] >= target]
    return max(ok, key=lambda s: s[qps]) if ok else None


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def run(n: int, d: int, args: argparse.Namespace, save: Any = None) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(args.threads)
    log(f"n={n} d={d}: generating")
    x, q = clustered(n, d, seed=d, nq=args.nq)
    out: dict[str, Any] = {"n": n, "d": d, "queries": len(q), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime()),
                           "load_avg_start": [round(v, 2) for v in os.getloadavg()]}
    log("exact")
    out["exact"], truth = bench_exact(faiss, x, q, 10, args.threads)
    sims = np.sort(q[:200] @ x[: min(n, 200_000)].T, axis=1)
    out["data"] = {"mean_cos_nn1": round(float((q[:200] * x[truth[:200, 0]]).sum(1).mean()), 3),
                   "mean_cos_nn10": round(float((q[:200] * x[truth[:200, 9]]).sum(1).mean()), 3),
                   "mean_cos_random_pair": round(float(sims.mean()), 3)}
    summary: dict[str, Any] = {}
    if "hnsw" in args.only:
        efs = [16, 32, 48, 64, 96, 128, 192, 256, 384]
        log(f"faiss hnsw M={args.m} efC={args.efc}")
        fidx, order, hf = build_faiss_hnsw(faiss, x, args.m, args.efc)
        log(f"  {hf['build_s']} s; hnswlib")
        hidx, hl = build_hnswlib(x, args.m, args.efc, args.threads)
        log(f"  {hl['build_s']} s; sweeps")
        hf["sweep"], hl["sweep"] = hnsw_sweeps(faiss, fidx, order, hidx, q, truth, efs, args.threads)
        out["hnsw_faiss"], out["hnswlib"] = hf, hl
        del fidx, hidx
        ex = out["exact"]
        for name, qps in (("batch", "qps"), ("one_query_per_call", "qps_one_query_per_call")):
            a, b = qps_at(hf["sweep"], 0.95, qps=qps), qps_at(hl["sweep"], 0.95, qps=qps)
            summary[f"hnsw_faiss_qps_at_recall_0.95_{name}"] = a
            summary[f"hnswlib_qps_at_recall_0.95_{name}"] = b
            summary[f"hnsw_faiss_vs_hnswlib_at_equal_recall_{name}"] = ratio(a, b)
            summary[f"hnsw_faiss_speedup_vs_exact_{name}"] = ratio(a, ex[qps], 1)
        if save:
            save(out)
    if "ivfpq" in args.only:
        done = []
        for factory in ivf_factories(n, d, args, args.train):
            log(f"ivf-pq {factory}")
            done.append(bench_ivfpq(faiss, x, q, truth, factory, [8, 16, 32, 64, 128], args))
            log(f"  {done[-1]['build_s']} s")
        summary.update(with_ivfpq(out, done))
    out["summary"] = summary
    out["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    log(json.dumps(summary))
    return out


def ivfpq_summary(ivf: dict[str, Any]) -> dict[str, Any]:
    return {"ivfpq_factory": ivf["factory"], "ivfpq_bytes_per_item": ivf["bytes_per_item"],
            "ivfpq_best_recall_at_10": max(s["recall_at_10"] for s in ivf["sweep"]),
            "ivfpq_at_0.7": best_at(ivf["sweep"], 0.7),
            "ivfpq_rerank_at_0.95": best_at(ivf["sweep"], 0.95, "rerank_recall_at_10", "rerank_qps")}


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # ru_maxrss is in KiB on Linux


def run_large(n: int, d: int, args: argparse.Namespace, save: Any = None) -> dict[str, Any]:
    """IVF-PQ over ``n`` vectors that are never all in memory (module docstring). Full vectors: float16 on disk."""
    import faiss

    from recsys.config import IndexSettings
    from recsys.index.factory import exact_topk, new_index, train_index

    faiss.omp_set_num_threads(args.threads)
    mix = Mixture(d, seed=d)
    q = mix.draw(args.nq_large, np.random.default_rng([d, 1 << 30]))
    out: dict[str, Any] = {"n": n, "d": d, "queries": len(q), "mode": "streamed",
                           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "load_avg_start": [round(v, 2) for v in os.getloadavg()]}
    chunk = 250_000
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        path = Path(tmp) / "vectors.f16"
        full = np.memmap(path, dtype=np.float16, mode="w+", shape=(n, d))
        t = time.perf_counter()
        for i, s in enumerate(range(0, n, chunk)):
            full[s:s + chunk] = mix.chunk(i, min(chunk, n - s))
            if i % 8 == 0:
                log(f"generated {s + chunk:,}")
        full.flush()
        out["generate_s"] = round(time.perf_counter() - t, 1)
        full = np.memmap(path, dtype=np.float16, mode="r", shape=(n, d))
        log("exact scan")
        t = time.perf_counter()
        scores, truth = exact_topk(full, q, 10, chunk=32768)  # the float16 values, as the index sees them
        dt = time.perf_counter() - t
        out["exact"] = {"method": "chunked BLAS scan of the float16 file (float32 maths)",
                        "qps": round(len(q) / dt, 2), "recall_at_10": 1.0}
        out["data"] = {"mean_cos_nn1": round(float(scores[:, 0].mean()), 3),
                       "mean_cos_nn10": round(float(scores[:, 9].mean()), 3)}
        if save:
            save(out)
        rows = np.sort(np.random.default_rng(0).choice(n, min(n, args.train_large), replace=False))
        sample = np.asarray(full[rows], dtype=np.float32)
        done = []
        for factory in ivf_factories(n, d, args, len(rows)):
            log(f"ivf-pq {factory}: train on {len(rows):,}")
            index = new_index(d, factory, IndexSettings())  # recsys's build path, as in make_index
            t = time.perf_counter()
            train_index(index, sample, factory)
            train_s = time.perf_counter() - t
            log(f"  trained in {train_s:.0f} s; adding")
            t = time.perf_counter()
            for s in range(0, n, chunk):
                index.add(np.asarray(full[s:s + chunk], dtype=np.float32))
            add_s = time.perf_counter() - t
            log(f"  added in {add_s:.0f} s")
            size = index_bytes(faiss, index, Path(tmp))
            done.append({"factory": factory, "train_sample": len(rows), "train_s": round(train_s, 1),
                         "add_s": round(add_s, 1), "build_s": round(train_s + add_s, 1),
                         "bytes_per_item": round(size / n, 1), "index_gb": round(size / 2**30, 2),
                         "rerank_shortlist": args.rerank,
                         "full_vectors": f"float16 np.memmap on local disk, {path.stat().st_size / 2**30:.1f} GiB "
                                         "(not counted in bytes_per_item)",
                         "sweep": ivf_sweep(faiss, index, q, truth, full, [8, 16, 32, 64, 128], args.rerank,
                                            args.threads, repeat=1)})  # 10M scans are long: one timing each
            log(json.dumps(ivfpq_summary(done[-1])))
            del index
            out["peak_rss_gb"] = peak_rss_gb()
            out["summary"] = with_ivfpq(out, done) | {"peak_rss_gb": out["peak_rss_gb"],
                                                       "build_s": out["ivfpq"]["build_s"]}
            if save:
                save(out)
        del sample
    out["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    log(json.dumps(out["summary"]))
    return out


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 vectors, queries or threads measure nothing)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive count")
    return int(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k vectors only, nothing written")
    ap.add_argument("--dims", type=positive, nargs="+", default=[384, 512])
    ap.add_argument("--sizes", type=positive, nargs="+", default=None)
    ap.add_argument("--nq", type=positive, default=500)
    ap.add_argument("--nq-large", type=positive, default=1000, help="queries for streamed (10M) runs")
    ap.add_argument("--threads", type=positive, default=2)
    ap.add_argument("--m", type=int, default=32, help="HNSW M (both libraries)")
    ap.add_argument("--efc", type=int, default=100, help="HNSW efConstruction (both libraries)")
    ap.add_argument("--rerank", type=int, default=100, help="IVF-PQ shortlist re-ranked from the memmap")
    ap.add_argument("--train", type=int, default=100_000, help="IVF-PQ training sample")
    ap.add_argument("--train-large", type=int, default=500_000, help="IVF-PQ training sample for streamed runs")
    ap.add_argument("--ivf-factory", nargs="+", default=None,
                    help="IVF-PQ factory strings, each measured on the same vectors (default: recsys's choice)")
    ap.add_argument("--only", nargs="+", default=["hnsw", "ivfpq"], choices=["hnsw", "ivfpq"])
    ap.add_argument("--skip", nargs="*", default=[], help="runs to leave out, as NxD (e.g. 1000000x512)")
    ap.add_argument("--stream-from", type=int, default=LARGE, help="sizes from which runs stream (run_large)")
    ap.add_argument("--scratch", default=None, help="directory for the streamed runs' float16 vector file")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000])
    out = args.out or (None if args.quick else Path(__file__).parent / "results" / "index.json")
    runs: list[dict[str, Any]] = []

    def save(partial: dict[str, Any] | None = None) -> None:
        """Write what is measured so far, so a long run that gets cut off still leaves its numbers."""
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            merged = _merge(out, _result(args, runs + ([partial] if partial else [])))
            out.write_text(json.dumps(merged, indent=2) + "\n")

    for n, d in [(n, d) for n in sizes for d in args.dims if f"{n}x{d}" not in args.skip]:
        runs.append((run_large if n >= args.stream_from else run)(n, d, args, save))
        save()
    print(json.dumps(_result(args, runs)))


def _merge(path: Path, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` merged into an earlier results file: a run with the same (n, d) keeps the parts (libraries,
    summary entries) that this one did not redo, e.g. HNSW and IVF-PQ measured by separate invocations."""
    if not path.exists():
        return result
    runs = {(r["n"], r["d"]): r for r in json.loads(path.read_text()).get("runs", [])}
    for r in result["runs"]:
        old = runs.get((r["n"], r["d"]), {})
        old = old if "started" in old else {}  # runs of the earlier script version are replaced, not mixed in
        runs[(r["n"], r["d"])] = old | r | {"summary": old.get("summary", {}) | r.get("summary", {})}
    return result | {"runs": [runs[key] for key in sorted(runs)]}


def _result(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "benchmark": "index", "k": 10, "threads": args.threads,
        "data": "anisotropic Gaussian mixture: 4000 centres, Dirichlet(0.7) sizes, power-law spectrum (i^-0.6), "
                "lognormal per-cluster per-axis spread, shared offset, random rotation, L2-normalised; queries are "
                "fresh draws",
        "qps_note": QPS_NOTE,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": _cpu_name()},
        "runs": runs,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
