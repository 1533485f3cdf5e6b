"""Recommendation quality side by side (issue 5 item 7): our pipeline, the three baselines, implicit ALS and BPR,
and Cornac VBPR, on the same temporal leave-last-out split in the same run, for every dataset present.

    .venv/bin/python bench/quality.py [--datasets hm,ml100k] [--part validation|test] [--data-root ../shared/data]

Users are split by salted hash (``recsys.evaluation.splits.user_part``): every choice of ours is made on
``--part validation`` (the default); ``--part test`` is the figure reported, run once. Every statistic any model
sees is counted as of each user's target time. The withheld-shoppers protocol of the outside check (import without
those shoppers, build, ``evaluate --test-events``) is ``bench/withheld.py``.

Each dataset is imported through the normal importer into a scratch store under bench/results/tmp/<dataset>/ (reused
on later runs), split with ``recsys.evaluation.temporal_split`` (H&M: last purchase day; MovieLens: last rating),
and every model is fitted on ``split.train`` only. Item vectors come from ``recsys.encoders.load_item_vectors``
when the encoders are built, else (development fallback, reported in the output) from all-MiniLM-L6-v2 text
embeddings of each item's text. VBPR gets the image vectors when there are any, else those same vectors.

Prints the markdown table to stderr, writes bench/results/quality.md and quality.json, and prints one JSON object
on the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import InputError, require_built  # noqa: E402
from _quality_peers import implicit_peer, vbpr_peer  # noqa: E402
from _quality_vectors import fallback_image_features, minilm_text_vectors  # noqa: E402

from recsys.config import Settings  # noqa: E402
from recsys.evaluation import Batch, best_other, make_baselines, markdown_table, run_evaluation  # noqa: E402
from recsys.evaluation.splits import Split, temporal_split  # noqa: E402

log = logging.getLogger("bench.quality")
DATASETS = {"hm": ("hm", "hm"), "ml100k": ("movielens", "movielens")}
STAMP_KEYS = ("measured_at", "measured_on", "wall_s")
"""Top-level keys run_all stamps on a result: never a dataset."""
PEER_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    # Best of a small grid (factors 32/64/128, regularization, alpha 1/10; BPR learning rate, iterations) on
    # this very split: optimistic for the peers, so a margin over them is not a tuning artefact of ours.
    "hm": {"als": {"factors": 128, "regularization": 0.1, "alpha": 10.0, "iterations": 15},
           "bpr": {"factors": 32, "learning_rate": 0.05, "regularization": 0.01, "iterations": 100}},
    "ml100k": {"als": {"factors": 64, "regularization": 0.01, "alpha": 10.0, "iterations": 15},
               "bpr": {"factors": 32, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100}},
}


# -- data ------------------------------------------------------------------------------------------------------------

def load_dataset(name: str, data_root: Path, scratch: Path) -> tuple[Settings, Any, pd.DataFrame, pd.DataFrame]:
    """Import the dataset once into a scratch store; return settings, store, events and items frames."""
    from recsys.store import Store
    from recsys.store.importers import run_import
    from recsys.store.queries import events_frame, items_frame, stats

    settings = Settings(home=scratch / name)
    store = Store.open(settings)
    with store.session() as s:
        st = stats(s)
    if not st["events"]:
        t0 = time.time()
        run_import(store, DATASETS[name][0], data_root / name, settings=settings)
        log.info("%s: imported in %.1fs", name, time.time() - t0)
    with store.session() as s:
        events = events_frame(s)
        items = items_frame(s)
    return settings, store, events, items


class Vectors:
    """A VectorsLike for the ranking pipeline (fused/text/image (n, d) float32, L2-normalised)."""

    def __init__(self, item_ids: list[str], fused: np.ndarray, text: np.ndarray | None, image: np.ndarray | None,
                 encoder_id: str, source: str) -> None:
        self.item_ids, self.fused, self.text, self.image = item_ids, fused, text, image
        self.encoder_id, self.source = encoder_id, source
        self.tower_text: np.ndarray | None = None
        """The text tower's own vectors (the content peer's space and the ranker's ``similar`` source)."""


def load_vectors(settings: Settings, store: Any, items: pd.DataFrame, cache: Path,
                 vectors_home: Path | None = None, embed: bool = False, image_fallback: bool = False) -> Vectors:
    """Our item vectors (``recsys.encoders``) from ``vectors_home`` (a data dir where ``recsys build`` ran) or the
    scratch store (``embed``: fit and embed there first); else the MiniLM text fallback."""
    ids = items["item_id"].astype(str).tolist()
    try:
        from recsys import encoders

        if embed and vectors_home is None:
            encoders.fit_encoder(store, settings)
            encoders.embed_catalog(store, settings)
        v = encoders.load_item_vectors(read_only(vectors_home) if vectors_home else settings)
        pos = {str(i): r for r, i in enumerate(v.item_ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise RuntimeError(f"{len(missing)} item(s) without vectors, e.g. {missing[:3]}")
        rows = np.array([pos[i] for i in ids])
        image = v.image[rows] * np.asarray(v.has_image, bool)[rows, None]
        out = Vectors(ids, v.fused[rows], v.text[rows], image, v.encoder_id,
                      f"recsys.encoders {v.encoder_id} ({vectors_home or 'scratch store'})")
        out.tower_text = v.tower_text[rows] if v.tower_text is not None else None
        return out
    except Exception as e:  # the encoders may not be built (or written) yet: fall back, and say so
        if vectors_home is not None:  # asked for by name: another store's (or no) vectors are an error, not a fallback
            raise InputError(f"--vectors-home {vectors_home}: its item vectors are unusable here "
                             f"({type(e).__name__}: {e})") from e
        log.warning("recsys item vectors unavailable (%s: %s); using MiniLM text vectors", type(e).__name__, e)
    image = fallback_image_features(items, cache) if image_fallback else None
    vec = minilm_text_vectors(items, cache)
    out = Vectors(ids, vec, vec, image, "minilm-text", "all-MiniLM-L6-v2 text (bench fallback)")
    out.tower_text = vec
    return out


def read_only(home: Path) -> Settings:
    """Settings for reading a built home's vectors without writing there: the torch towers (the same encoder id as
    the ONNX runtime's; an ONNX export would be written under the home)."""
    settings = Settings(home=home)
    if settings.encoder.runtime in ("auto", "onnx"):
        settings.encoder.runtime = "torch"
    return settings


# -- peers -----------------------------------------------------------------------------------------------------------

# in bench/_quality_peers.py (implicit ALS and BPR, Cornac VBPR) and bench/_quality_vectors.py (the MiniLM and
# efficientnet fallbacks), imported above

# -- ours ------------------------------------------------------------------------------------------------------------

def ours(split: Split, items: pd.DataFrame, vectors: Vectors, settings: Settings) -> tuple[Batch, float]:
    """Hook for our pipeline: ``recsys.ranking.RankingPipeline`` fitted on the split's training events (its
    co-purchase space, when on, on those before the earliest target, as ``recsys evaluate`` fits it)."""
    from recsys.ranking import RankingPipeline

    t0 = time.time()
    pipe = RankingPipeline.fit(split.train, items, vectors, settings, cobuy_before=split.earliest_target)
    fit_s = time.time() - t0

    def rec(user_ids: list[str], hists: list[pd.DataFrame], k: int) -> list[list[str]]:
        nows = [split.target_time[u].to_pydatetime() for u in user_ids]
        recs = pipe.recommend_many(hists, k, now=nows)
        return [[r.item_id for r in rs] for rs in recs]

    return Batch(rec), fit_s


# -- driver ----------------------------------------------------------------------------------------------------------

def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.time()
    settings, store, events, items = load_dataset(name, args.data_root, args.scratch)
    load_s = time.time() - t0
    live = items[~items["hidden"].astype(bool) & ~items["deleted"].astype(bool)]
    split = temporal_split(events, DATASETS[name][1], items=set(live["item_id"].astype(str)),
                           max_users=args.max_users, seed=args.seed, part=None if args.part == "all" else args.part)
    t1 = time.time()
    vectors = load_vectors(settings, store, live, settings.home, args.vectors_home.get(name), args.embed,
                           args.image_fallback)
    vec_s = time.time() - t1
    exclude_seen = split.protocol == "last_interaction"
    recs: dict[str, Any] = {}
    timings: dict[str, float] = {"load": load_s, "vectors": vec_s}
    notes: dict[str, str] = {}
    peers: list[tuple[str, Callable[[], tuple[Batch, float]]]] = [
        ("ours", lambda: ours(split, live, vectors, settings)),
        ("implicit_als", lambda: implicit_peer(split, "als", PEER_PARAMS[name]["als"], exclude_seen, args.seed)),
        ("implicit_bpr", lambda: implicit_peer(split, "bpr", PEER_PARAMS[name]["bpr"], exclude_seen, args.seed)),
        ("cornac_vbpr", lambda: vbpr_peer(split, vectors, exclude_seen, args.seed)),
    ]
    for pname, make in peers:
        if pname in args.skip:
            continue
        try:
            recs[pname], timings[f"fit_{pname}"] = make()
        except Exception as e:  # a peer that cannot run here is reported, not fatal; our own model is the benchmark
            if pname == "ours":
                raise
            notes[pname] = f"{type(e).__name__}: {e}"
            log.error("%s on %s failed: %s", pname, name, notes[pname])
            log.debug("%s", traceback.format_exc())
    t2 = time.time()
    # vectors.item_ids are the live items: the baselines recommend from them alone, as ours does (fitted on `live`)
    recs.update(make_baselines(split, vectors.item_ids, vectors.fused, content_vectors=vectors.tower_text))
    timings["fit_baselines"] = time.time() - t2
    result = run_evaluation(split, recs, k=args.k, catalogue_size=len(live), timings=timings,
                            extra={"dataset": name, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "targets_unservable": split.info.get("targets_unservable", 0),
                                   "users_unservable": split.info.get("users_unservable", 0),
                                   "vectors": vectors.source, "split": split.info,
                                   "peer_params": PEER_PARAMS[name]})
    if notes:
        result["errors"] = notes
    if "cornac_vbpr" in recs:
        fallback = vectors.encoder_id == "minilm-text"
        origin = "efficientnet_lite0 ImageNet trunk, bench fallback" if fallback else vectors.source
        result["vbpr_features"] = f"image vectors ({origin})" if vectors.image is not None else vectors.source
    if result["metrics"]:
        bname, bval = best_other(result, "recall")
        nname, nval = best_other(result, "ndcg")
        result["vs_best"] = {
            "recall": {"best": bname, "ratio": round(result["metrics"]["recall"] / bval, 3) if bval else None},
            "ndcg": {"best": nname, "ratio": round(result["metrics"]["ndcg"] / nval, 3) if nval else None},
        }
    store.dispose()
    return result


def run_withheld(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """bench/withheld.py for one dataset: import without the part's shoppers, build, replay them, evaluate."""
    import subprocess

    cmd = [sys.executable, str(ROOT / "bench" / "withheld.py"), "--dataset", name, "--part", args.part,
           "--data-root", str(args.data_root), "--k", str(args.k), "--out", str(args.out),
           "--scratch", str(args.scratch)]
    if name in args.vectors_home:
        cmd += ["--reuse-home", str(args.vectors_home[name])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"bench/withheld.py on {name} failed ({proc.returncode}): {why}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=None,
                    help="comma list (default hm,ml100k, those present); a dataset named here and missing is an error")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--scratch", type=Path, default=ROOT / "bench" / "results" / "tmp")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--max-users", type=int, default=None)
    ap.add_argument("--part", default="validation", choices=["validation", "test", "all"],
                    help="users evaluated (salted hash split): tune on validation, report test once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vectors-home", default="",
                    help="DATASET=DIR,...: take item vectors from the data dir where `recsys build` ran (read only; "
                         "one that is not a built store is an error)")
    ap.add_argument("--embed", action="store_true", help="fit the encoder and embed in the scratch store first")
    ap.add_argument("--image-fallback", action="store_true",
                    help="without recsys vectors, give VBPR efficientnet_lite0 image features (slow on a CPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a shared machine)")
    ap.add_argument("--skip", default="", help="comma list of ours,implicit_als,implicit_bpr,cornac_vbpr")
    ap.add_argument("--withheld", action="store_true",
                    help="also run the withheld-shoppers protocol (bench/withheld.py) on --part for each dataset, "
                         "reusing the --vectors-home build's tower features; its figures join the output")
    args = ap.parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    args.vectors_home = {k: Path(v) for k, v in (x.split("=", 1) for x in filter(None, args.vectors_home.split(",")))}
    return args


def datasets_to_run(args: argparse.Namespace) -> list[str]:
    """The datasets present of those asked for, their vectors homes checked; InputError for one named in
    ``--datasets`` and missing, for none found at all, or for a ``--vectors-home`` that is not a built store."""
    names = [n for n in (args.datasets or ",".join(DATASETS)).split(",") if n]
    for name in names:
        if name not in DATASETS:
            raise InputError(f"--datasets: unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    present = [n for n in names if (args.data_root / n).is_dir()]
    for name in (n for n in names if n not in present):
        if args.datasets is not None:
            raise InputError(f"--datasets {name}: not found under --data-root {args.data_root} (no folder "
                             f"{args.data_root / name})")
        log.warning("%s not found under %s: skipped", name, args.data_root)
    if not present:
        raise InputError(f"--data-root {args.data_root}: none of {', '.join(names)} is there; nothing was measured")
    for name in present:
        if name in args.vectors_home:
            require_built(args.vectors_home[name], f"--vectors-home {name}=")
    return present


def save(out: Path, results: dict[str, Any]) -> None:
    """Merge into ``out``/quality.json: datasets not run this time keep their last results (each carries its own
    timestamp); run_all's stamp (a bare ``{}`` once got one) is no dataset."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "quality.json"
    merged = {**(json.loads(saved.read_text()) if saved.exists() else {}), **results}
    merged = {n: r for n, r in merged.items() if n not in STAMP_KEYS and isinstance(r, dict)}
    (out / "quality.md").write_text("\n".join(markdown_table(r, title=f"{n} ({r.get('generated_at', '?')})")
                                              for n, r in merged.items()))
    saved.write_text(json.dumps(merged, indent=1))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    results: dict[str, Any] = {}
    tables = []
    error = None
    try:
        names = datasets_to_run(args)  # every input checked before anything runs
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        for name in names:
            # per-user scoring is many small BLAS calls: a thread pool only spins, badly so on a shared machine
            with threadpool_limits(args.threads, "blas"):
                results[name] = run_dataset(name, args)
            tables.append(markdown_table(results[name], title=name))
            if args.withheld and args.part in ("validation", "test"):
                results[f"{name}_withheld_{args.part}"] = run_withheld(name, args)
                tables.append(markdown_table(results[f"{name}_withheld_{args.part}"],
                                             title=f"{name}, withheld shoppers"))
    except InputError as e:
        error = str(e)
    print("\n".join(tables), file=sys.stderr)
    if results:  # what was measured before a failure is kept
        save(args.out, results)
    if error is not None:
        print(f"quality.py: {error}", file=sys.stderr)
        print(json.dumps({"error": error, "measured": sorted(results)}))
        raise SystemExit(1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
