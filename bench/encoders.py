"""Encoder benchmark: pipeline throughput vs the bare model, and H&M cross-modal quality after `encoder fit`.

    .venv/bin/python bench/encoders.py [--data ../shared/data/hm] [--home /tmp/recsys-bench] [--skip-quality]
        [--runtime torch|onnx|onnx-int8]

(a) images/s and texts/s of the whole pipeline (files on disk -> DataLoader workers decoding -> towers -> heads ->
    unit vectors) against the bare model forward on the same, already decoded batches, in the fastest configuration
    found (batch size, channels-last); the ratio is the figure.
(b) on H&M: image->text and text->image Recall@10 among 1,000 held-out articles, attribute probes (precision@20 of
    image-only search for colour words and product-type words against the articles' metadata, among the held-out
    images and over the whole catalogue), and zero-shot tag accuracy on the held-out articles.

Tower features are cached under --home, so only the first run pays for the image tower over the catalogue.
Prints one JSON object on the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.config import Settings  # noqa: E402
from recsys.encoders.encoder import TowerEncoder, get_encoder  # noqa: E402
from recsys.encoders.features import MediaJob, image_features, media_loader  # noqa: E402
from recsys.encoders.fit import build_pairs, fit_on_pairs, split_pairs  # noqa: E402
from recsys.encoders.media import MediaLimits  # noqa: E402
from recsys.encoders.tagging import score_labels  # noqa: E402
from recsys.encoders.text import ItemRecord  # noqa: E402
from recsys.encoders.training import FitParams  # noqa: E402

COLOUR_WORDS = ["black", "white", "blue", "red", "pink", "grey", "green", "beige", "yellow", "brown"]
TYPE_WORDS = ["dress", "trousers", "sweater", "t-shirt", "blouse", "top", "bra", "shorts", "skirt", "shirt",
              "jacket", "vest top"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def hm_records(data: Path) -> tuple[list[ItemRecord], pd.DataFrame]:
    """Items as the H&M importer writes them (title, category, description, attributes, image path)."""
    from recsys.store.importers.hm import ATTRIBUTES

    a = pd.read_csv(data / "articles.csv", dtype=str, keep_default_na=False)
    recs = []
    for r in a.to_dict("records"):
        aid = r["article_id"]
        img = data / "images" / aid[:3] / f"{aid}.jpg"
        recs.append(ItemRecord(aid, r["prod_name"].strip(), r["detail_desc"].strip(), r["product_type_name"].strip(),
                               {k: r[c].strip() for k, c in ATTRIBUTES.items() if r[c].strip()}, "",
                               (("image", str(img)),) if img.is_file() else ()))
    return recs, a.set_index("article_id")


# -- (a) throughput ----------------------------------------------------------------------------------------------
def _rate(fn: Any, n: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times)


def throughput(enc: TowerEncoder, paths: list[str], settings: Settings) -> dict[str, Any]:
    towers: Any = enc.towers
    limits = MediaLimits()
    from recsys.encoders.media import load_media

    decoded = torch.stack([towers.preprocess(load_media(p, "image", limits)[0]) for p in paths])
    n = len(paths)
    configs: dict[str, float] = {}
    if not hasattr(towers, "image_model"):  # ONNX Runtime towers: no memory-format choice, only the batch size
        return _onnx_throughput(enc, decoded, paths, settings, limits)
    model = towers.image_model
    grid = {True: (8, 16, 32), False: (32, 64)}
    for channels_last, sizes in grid.items():
        m = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        towers.channels_last = channels_last
        for bs in sizes:
            def bare(bs: int = bs) -> None:
                for i in range(0, n, bs):
                    enc.project_images(towers.image_features(decoded[i : i + bs]))
            configs[f"{'channels_last' if channels_last else 'nchw'}_b{bs}"] = round(_rate(bare, n, 2), 2)
        del m
    best = max(configs, key=lambda k: configs[k])
    towers.channels_last = best.startswith("channels_last")
    fmt = torch.channels_last if towers.channels_last else torch.contiguous_format
    towers.image_model = model.to(memory_format=fmt)
    bs = int(best.split("_b")[-1])
    jobs = [MediaJob(p) for p in paths]

    def pipeline() -> None:
        image_features(towers, jobs, None, limits, batch_size=bs, num_workers=settings.encoder.num_workers)

    def bare_best() -> None:
        for i in range(0, n, bs):
            enc.project_images(towers.image_features(decoded[i : i + bs]))

    # Interleave to share the machine's load fairly between the two measurements.
    pipe_rates, bare_rates = [], []
    for _ in range(3):
        bare_rates.append(_rate(bare_best, n, 1))
        pipe_rates.append(_rate(pipeline, n, 1))
    _ = media_loader  # the pipeline path: DataLoader workers decode, the model runs in the main process
    texts = [f"{w} {t}" for w in COLOUR_WORDS for t in TYPE_WORDS] * 2
    text_pipe = _rate(lambda: enc.encode_texts(texts), len(texts))
    return {
        "images": n, "threads": torch.get_num_threads(), "num_workers": settings.encoder.num_workers,
        "bare_configs_images_per_s": configs, "best_config": best,
        "bare_images_per_s": round(statistics.median(bare_rates), 2),
        "pipeline_images_per_s": round(statistics.median(pipe_rates), 2),
        "ratio": round(statistics.median(p / b for p, b in zip(pipe_rates, bare_rates, strict=True)), 3),
        "pipeline_texts_per_s": round(text_pipe, 1),
    }


def _onnx_throughput(enc: TowerEncoder, decoded: torch.Tensor, paths: list[str], settings: Settings,
                     limits: MediaLimits) -> dict[str, Any]:
    towers: Any = enc.towers
    n = len(paths)
    configs: dict[str, float] = {}
    for bs in (8, 16, 32, 64):
        def bare(bs: int = bs) -> None:
            for i in range(0, n, bs):
                enc.project_images(towers.image_features(decoded[i : i + bs]))
        configs[f"{towers.runtime}_b{bs}"] = round(_rate(bare, n, 2), 2)
    best = max(configs, key=lambda k: configs[k])
    bs = int(best.split("_b")[-1])
    jobs = [MediaJob(p) for p in paths]
    pipe_rates, bare_rates = [], []
    for _ in range(3):
        bare_rates.append(_rate(lambda: [enc.project_images(towers.image_features(decoded[i : i + bs]))
                                         for i in range(0, n, bs)], n, 1))
        pipe_rates.append(_rate(lambda: image_features(towers, jobs, None, limits, batch_size=bs,
                                                       num_workers=settings.encoder.num_workers), n, 1))
    texts = [f"{w} {t}" for w in COLOUR_WORDS for t in TYPE_WORDS] * 2
    return {
        "images": n, "runtime": towers.runtime, "threads": towers.threads, "num_workers": settings.encoder.num_workers,
        "bare_configs_images_per_s": configs, "best_config": best,
        "bare_images_per_s": round(statistics.median(bare_rates), 2),
        "pipeline_images_per_s": round(statistics.median(pipe_rates), 2),
        "ratio": round(statistics.median(p / b for p, b in zip(pipe_rates, bare_rates, strict=True)), 3),
        "pipeline_texts_per_s": round(_rate(lambda: enc.encode_texts(texts), len(texts)), 1),
    }


# -- (b) quality -------------------------------------------------------------------------------------------------
def precision_at(enc: TowerEncoder, image_vecs: np.ndarray, ids: list[str], meta: pd.DataFrame, words: list[str],
                 relevant: Any, k: int = 20) -> dict[str, float]:
    q = enc.encode_texts(words)
    sims = q @ image_vecs.T
    out = {}
    for w, row in zip(words, sims, strict=True):
        top = np.argsort(-row)[:k]
        out[w] = float(np.mean([relevant(meta.loc[ids[j]], w) for j in top]))
    return out


def colour_match(m: Any, w: str) -> bool:
    return w in f"{m.colour_group_name} {m.perceived_colour_master_name}".lower().split()


def type_match(m: Any, w: str) -> bool:
    return str(m.product_type_name).lower() == w


def quality(enc: TowerEncoder, data: Path, settings: Settings, params: FitParams,
            cached_only: bool = False) -> dict[str, Any]:
    recs, meta = hm_records(data)
    if cached_only:
        from recsys.encoders.features import feature_caches

        icache, _ = feature_caches(settings, enc.towers)
        have = icache.get_many(MediaJob(r.media[0][1]).key for r in recs if r.media)
        recs = [r for r in recs if r.media and MediaJob(r.media[0][1]).key in have]
        log(f"cached-only: {len(recs)} articles")
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 2048 < settings.encoder.batch_size:
            log(f"image features {done}/{total}")

    pairs, errors = build_pairs(enc, recs, settings, progress=progress)
    feat_s = time.perf_counter() - t0
    fitted, metrics, n_train, n_val = fit_on_pairs(enc, pairs, params)
    _, val = split_pairs(pairs, params.val_pairs, params.seed)
    val_img = fitted.project_images(val.image)
    all_img = fitted.project_images(pairs.image)
    probes: dict[str, Any] = {}
    for scope, vecs, ids in (("held_out", val_img, val.item_ids), ("catalogue", all_img, pairs.item_ids)):
        col = precision_at(fitted, vecs, ids, meta, COLOUR_WORDS, colour_match)
        typ = precision_at(fitted, vecs, ids, meta, TYPE_WORDS, type_match)
        probes[scope] = {"colour_precision@20": round(float(np.mean(list(col.values()))), 3),
                         "type_precision@20": round(float(np.mean(list(typ.values()))), 3),
                         "colour_by_word": {k: round(v, 2) for k, v in col.items()},
                         "type_by_word": {k: round(v, 2) for k, v in typ.items()}}
    # Zero-shot tags on held-out images against metadata (perceived colour, product type).
    vm = meta.loc[val.item_ids]
    tags = {}
    for facet, column in (("colour", "perceived_colour_master_name"), ("type", "product_type_name")):
        labels = sorted(meta[column].value_counts().loc[lambda c: c >= 50].index)
        scores = score_labels(val_img, fitted.encode_texts([x.lower() for x in labels]))
        pred = np.array(labels)[scores.argmax(1)]
        mask = vm[column].isin(labels).to_numpy()
        acc = float((pred[mask] == vm[column].to_numpy()[mask]).mean())
        tags[facet] = {"labels": len(labels), "accuracy": round(acc, 3)}
    return {"pairs_train": n_train, "pairs_val": n_val, "broken_media": len(errors),
            "image_to_text_recall@10": round(metrics["image_to_text_recall@10"], 3),
            "text_to_image_recall@10": round(metrics["text_to_image_recall@10"], 3),
            "probes": probes, "zero_shot_tag_accuracy": tags,
            "feature_seconds": round(feat_s, 1), "fit_train_seconds": metrics["train_seconds"]}


def missing_inputs(args: argparse.Namespace) -> str | None:
    """What a run asked for has no input (each part asked for needs its own: images for the throughput, articles.csv
    for the quality), or None. Every part measured or none: a part left out without a flag saying so would leave
    its saved figures looking current."""
    if args.skip_throughput and args.skip_quality:
        return "nothing to measure: --skip-throughput and --skip-quality both given"
    missing = []
    if not args.skip_throughput and (args.images < 1 or not any((args.data / "images").glob("*/*.jpg"))):
        missing.append(f"no images under {args.data / 'images'} for the throughput (--images {args.images})")
    if not args.skip_quality and not (args.data / "articles.csv").is_file():
        missing.append(f"no {args.data / 'articles.csv'} for the H&M quality")
    if not missing:
        return None
    skip = " or ".join(flag for flag, part in (("--skip-throughput", "throughput"), ("--skip-quality", "quality"))
                       if any(part in m for m in missing))
    return (f"--data {args.data}: {'; '.join(missing)}; point --data at the H&M data (../shared/data/hm), or leave "
            f"the part out with {skip}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hm")
    ap.add_argument("--home", type=Path, default=Path("/tmp/recsys-hm"))
    ap.add_argument("--images", type=int, default=128, help="images for the throughput measurement")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--cached-only", action="store_true", help="use only articles whose tower features are cached")
    ap.add_argument("--runtime", default="torch", choices=["torch", "onnx", "onnx-int8"],
                    help="tower runtime (bench/onnx_towers.py compares them in one run)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    missing = missing_inputs(args)  # before the encoder loads: a run that would measure nothing is a failure
    if missing:
        raise SystemExit(f"encoders.py: {missing}")
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings(home=args.home)
    settings.encoder.device = "cpu"
    settings.encoder.runtime = args.runtime
    enc = get_encoder(settings, fitted=False)
    out: dict[str, Any] = {"encoder": enc.preset.name, "towers": enc.towers.id, "torch": torch.__version__}
    paths = sorted(str(p) for p in (args.data / "images").glob("*/*.jpg"))[: args.images]
    if not args.skip_throughput:
        out["throughput"] = throughput(enc, paths, settings)
        log(json.dumps(out["throughput"]))
    if not args.skip_quality:
        params = FitParams(val_pairs=1000)
        if args.epochs:
            params.epochs = args.epochs
        out["hm"] = quality(enc, args.data, settings, params, args.cached_only)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
