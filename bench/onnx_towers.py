"""Encoder runtimes benchmark: the recsys-lite towers on torch vs ONNX Runtime fp32 vs ONNX Runtime int8-text.

    .venv/bin/python bench/onnx_towers.py [--data ../shared/data/hm] [--home /tmp/recsys-onnx-bench]
        [--features-from ../scratch/hm] [--images 64] [--val 1000] [--skip-quality]

(a) Speed, in the same run, interleaved rounds (the machine is shared: the ratios are the figures): images/s of the
    bare tower forward on already decoded H&M images, texts/s on H&M item texts (tokenising included), for torch
    (channels-last, batch 32), onnx and onnx-int8 (intra-op threads = cores, and 1 thread for comparison); the max
    absolute feature difference of each ONNX runtime from torch on the same inputs.
(b) Quality on H&M: the heads are fitted once on the torch features of the catalogue (read from the cached features of
    --features-from, copied, never written; articles without cached features are left out), then the 1,000 held-out
    articles are embedded from their files by each runtime, each in its own empty feature cache, and scored with the
    same heads: image->text and text->image Recall@10 among them and image-only colour/type precision@20 (query words
    embedded by the same runtime). Deltas are against torch; the bar is 0.01.

(c) ``--int8-refit`` (alone): heads fitted on onnx-int8 features (as its own towers id requires), scored on the same
    held-out split.

Prints one JSON object on the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import encoders as hm_bench  # noqa: E402  (bench/encoders.py: H&M records and the probes)
from _homes import InputError, exit_if_unusable, require_files  # noqa: E402

from recsys.config import Settings  # noqa: E402
from recsys.encoders.encoder import TowerEncoder, get_encoder, load_towers  # noqa: E402
from recsys.encoders.fit import build_pairs, fit_on_pairs, split_pairs  # noqa: E402
from recsys.encoders.media import MediaLimits, load_media  # noqa: E402
from recsys.encoders.onnx_runtime import OnnxTowers, cpu_threads  # noqa: E402
from recsys.encoders.training import FitParams, evaluate  # noqa: E402

RUNTIMES = ("torch", "onnx", "onnx-int8")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def speed(towers: dict[str, Any], one_thread: Any, paths: list[str], texts: list[str], rounds: int = 3,
          batch: int = 32) -> dict[str, Any]:
    limits = MediaLimits()
    base = towers["torch"]
    decoded = torch.stack([base.preprocess(load_media(p, "image", limits)[0]) for p in paths])
    texts = sorted(texts, key=len)
    n, m = len(decoded), len(texts)

    def images(t: Any) -> Any:
        return lambda: [t.image_features(decoded[i : i + batch]) for i in range(0, n, batch)]

    def encode_texts(t: Any) -> Any:
        return lambda: [t.text_features(texts[i : i + 128]) for i in range(0, m, 128)]

    runs = {**towers, "onnx_1_thread": one_thread}
    for t in runs.values():  # warm-up (first-run allocations, lazy init)
        t.image_features(decoded[:batch])
        t.text_features(texts[:8])
    img: dict[str, list[float]] = {k: [] for k in runs}
    txt: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for k, t in runs.items():
            img[k].append(n / _time(images(t)))
            txt[k].append(m / _time(encode_texts(t)))
        log(f"round {r}: " + ", ".join(f"{k} {img[k][-1]:.1f} img/s {txt[k][-1]:.0f} txt/s" for k in runs))
    ref_i = base.image_features(decoded).numpy()
    ref_t = torch.cat([base.text_features(texts[i : i + 128]) for i in range(0, m, 128)]).numpy()
    out: dict[str, Any] = {"images": n, "texts": m, "image_batch": batch, "text_batch": 128,
                           "torch_threads": torch.get_num_threads(), "onnx_threads": cpu_threads(), "runtimes": {}}
    for k in runs:
        row: dict[str, Any] = {"images_per_s": round(statistics.median(img[k]), 2),
                               "texts_per_s": round(statistics.median(txt[k]), 1)}
        if k != "torch":
            # Per-round ratios: both sides of a ratio ran back to back, under the same load.
            row["image_speedup_vs_torch"] = round(statistics.median(
                a / b for a, b in zip(img[k], img["torch"], strict=True)), 2)
            row["text_speedup_vs_torch"] = round(statistics.median(
                a / b for a, b in zip(txt[k], txt["torch"], strict=True)), 2)
            t = runs[k]
            row["image_max_abs_diff"] = float(np.abs(t.image_features(decoded).numpy() - ref_i).max())
            got_t = torch.cat([t.text_features(texts[i : i + 128]) for i in range(0, m, 128)]).numpy()
            row["text_max_abs_diff"] = float(np.abs(got_t - ref_t).max())
        out["runtimes"][k] = row
    return out


def _probes(enc: TowerEncoder, vecs: np.ndarray, ids: list[str], meta: Any) -> dict[str, float]:
    col = hm_bench.precision_at(enc, vecs, ids, meta, hm_bench.COLOUR_WORDS, hm_bench.colour_match)
    typ = hm_bench.precision_at(enc, vecs, ids, meta, hm_bench.TYPE_WORDS, hm_bench.type_match)
    return {"colour_precision@20": round(float(np.mean(list(col.values()))), 4),
            "type_precision@20": round(float(np.mean(list(typ.values()))), 4)}


def quality(towers: dict[str, Any], data: Path, home: Path, features_from: Path | None, val_pairs: int,
            epochs: int | None) -> dict[str, Any]:
    base_id = towers["torch"].id.replace("/", "_")
    cache = home / "fit" / "cache" / "features" / base_id
    if features_from is not None and not (cache / "image.db").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("image.db", "text.db"):
            src = features_from / "cache" / "features" / base_id / name
            if src.is_file():
                shutil.copy(src, cache / name)  # read-only source: work on a copy
    fit_settings = Settings(home=home / "fit")
    fit_settings.encoder.device, fit_settings.encoder.runtime = "cpu", "torch"
    enc = get_encoder(fit_settings, fitted=False)
    recs, meta = hm_bench.hm_records(data)
    from recsys.encoders.features import MediaJob, feature_caches

    icache, _ = feature_caches(fit_settings, enc.towers)
    have = icache.get_many(MediaJob(r.media[0][1]).key for r in recs if r.media)
    recs = [r for r in recs if r.media and MediaJob(r.media[0][1]).key in have]
    log(f"articles with cached torch features: {len(recs)}")
    pairs, _ = build_pairs(enc, recs, fit_settings)
    params = FitParams(val_pairs=val_pairs)
    if epochs:
        params.epochs = epochs
    fitted, metrics, n_train, n_val = fit_on_pairs(enc, pairs, params)
    _, val = split_pairs(pairs, params.val_pairs, params.seed)
    val_ids = set(val.item_ids)
    val_recs = [r for r in recs if r.item_id in val_ids]
    out: dict[str, Any] = {"articles": len(recs), "pairs_train": n_train, "pairs_val": n_val,
                           "fit_val_metrics_cached_torch": {k: round(v, 4) for k, v in metrics.items()
                                                            if "recall" in k}, "runtimes": {}}
    for name, t in towers.items():
        s = Settings(home=home / f"val-{name}")  # an empty feature cache: every runtime computes its own features
        s.encoder.device = "cpu"
        s.encoder.num_workers = 1
        renc = TowerEncoder(enc.preset, t, fitted.heads)
        t0 = time.perf_counter()
        rpairs, _ = build_pairs(renc, val_recs, s)
        seconds = time.perf_counter() - t0
        m = evaluate(fitted.heads, rpairs)
        vecs = renc.project_images(rpairs.image)
        out["runtimes"][name] = {"image_to_text_recall@10": round(m["image_to_text_recall@10"], 4),
                                 "text_to_image_recall@10": round(m["text_to_image_recall@10"], 4),
                                 **_probes(renc, vecs, rpairs.item_ids, meta), "feature_seconds": round(seconds, 1)}
        shutil.rmtree(home / f"val-{name}", ignore_errors=True)
        log(f"{name}: {out['runtimes'][name]}")
    ref = out["runtimes"]["torch"]
    for name in RUNTIMES[1:]:
        row = out["runtimes"][name]
        row["delta_vs_torch"] = {k: round(row[k] - ref[k], 4) for k in ref if k != "feature_seconds"}
        row["within_0.01"] = all(abs(v) <= 0.01 for v in row["delta_vs_torch"].values())
    return out


def int8_refit(towers: dict[str, Any], data: Path, home: Path, features_from: Path, val_pairs: int,
               epochs: int | None) -> dict[str, Any]:
    """onnx-int8 as it is meant to be used: its own towers id, so heads fitted on its own features. The image tower
    is the fp32 export (within 3e-5 of torch), so the torch image features are reused; every text is encoded by the
    int8 text tower. Scored on the same held-out split (same seed and size)."""
    from recsys.encoders.encoder import new_heads
    from recsys.encoders.features import MediaJob, feature_caches
    from recsys.encoders.registry import get_preset

    int8 = towers["onnx-int8"]
    s = Settings(home=home / "fit-int8")
    s.encoder.device = "cpu"
    target = s.home / "cache" / "features" / re.sub(r"[^A-Za-z0-9._@-]+", "_", int8.id) / "image.db"
    source = features_from / "cache" / "features" / towers["torch"].id.replace("/", "_") / "image.db"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    preset = get_preset("recsys-lite", s)
    enc = TowerEncoder(preset, int8, new_heads(preset, int8))
    recs, meta = hm_bench.hm_records(data)
    icache, _ = feature_caches(s, int8)
    have = icache.get_many(MediaJob(r.media[0][1]).key for r in recs if r.media)
    recs = [r for r in recs if r.media and MediaJob(r.media[0][1]).key in have]
    t0 = time.perf_counter()
    pairs, _ = build_pairs(enc, recs, s)
    text_seconds = time.perf_counter() - t0
    params = FitParams(val_pairs=val_pairs)
    if epochs:
        params.epochs = epochs
    fitted, metrics, n_train, n_val = fit_on_pairs(enc, pairs, params)
    _, val = split_pairs(pairs, params.val_pairs, params.seed)
    vecs = fitted.project_images(val.image)
    return {"articles": len(recs), "pairs_train": n_train, "pairs_val": n_val,
            "image_to_text_recall@10": round(metrics["image_to_text_recall@10"], 4),
            "text_to_image_recall@10": round(metrics["text_to_image_recall@10"], 4),
            **_probes(fitted, vecs, val.item_ids, meta), "text_feature_seconds": round(text_seconds, 1)}


def check_data(args: argparse.Namespace) -> None:
    """InputError unless --data holds what every run reads: articles.csv (the texts and the probes' metadata) and
    the images (the speed rounds, the held-out pairs)."""
    hint = "point --data at the H&M data (../shared/data/hm)"
    require_files("--data", args.data, args.data / "articles.csv", hint=hint)
    if not any((args.data / "images").glob("*/*.jpg")):
        raise InputError(f"--data {args.data}: no images under {args.data / 'images'}; {hint}")


def check_features(args: argparse.Namespace, towers_id: str) -> None:
    """InputError unless the quality runs have the cached torch tower features they copy from --features-from (or
    a copy an earlier run made under --home)."""
    if args.skip_quality and not args.int8_refit:
        return
    name = towers_id.replace("/", "_")
    copied = [args.home / "fit" / "cache" / "features" / name / "image.db"] if not args.int8_refit else list(
        (args.home / "fit-int8" / "cache" / "features").glob("*/image.db"))
    if any(p.is_file() for p in copied):
        return
    require_files("--features-from", args.features_from, args.features_from / "cache" / "features" / name / "image.db",
                  hint="give a store built on the H&M data with these towers (its cached image features)"
                       + ("" if args.int8_refit else ", or --skip-quality"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hm")
    ap.add_argument("--home", type=Path, default=Path("/tmp/recsys-onnx-bench"))
    ap.add_argument("--features-from", type=Path, default=ROOT.parent / "scratch" / "hm",
                    help="a built store whose cached torch tower features are copied (read only)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--int8-refit", action="store_true",
                    help="only: fit heads on onnx-int8 features and score the same held-out split")
    args = ap.parse_args()
    exit_if_unusable(lambda: check_data(args))  # before the towers load and export
    preset_settings = Settings(home=args.home)
    from recsys.encoders.registry import get_preset

    preset = get_preset("recsys-lite", preset_settings)
    base = load_towers(preset, "cpu", "torch")
    exit_if_unusable(lambda: check_features(args, base.id))
    onnx_dir = args.home / "onnx"
    t0 = time.perf_counter()
    towers: dict[str, Any] = {"torch": base, "onnx": OnnxTowers(base, onnx_dir, "onnx"),
                              "onnx-int8": OnnxTowers(base, onnx_dir, "onnx-int8")}
    out: dict[str, Any] = {"encoder": preset.name, "towers": base.id, "torch": torch.__version__,
                           "onnxruntime": __import__("onnxruntime").__version__, "cores": cpu_threads(),
                           "export_or_load_seconds": round(time.perf_counter() - t0, 1)}
    if args.int8_refit:
        out["hm_int8_refit"] = int8_refit(towers, args.data, args.home, args.features_from, args.val, args.epochs)
        print(json.dumps(out))
        return
    one_thread = OnnxTowers(base, onnx_dir, "onnx", threads=1)
    paths = sorted(str(p) for p in (args.data / "images").glob("*/*.jpg"))[: args.images]
    recs, _ = hm_bench.hm_records(args.data)
    texts = [f"{r.title}. {r.category}. {r.description}" for r in recs[: args.texts]]
    out["speed"] = speed(towers, one_thread, paths, texts, args.rounds)
    log(json.dumps(out["speed"]))
    onnx_row = out["speed"]["runtimes"]["onnx"]  # what runtime=auto picks on a CPU
    out["speedup_vs_torch"] = {"images": onnx_row["image_speedup_vs_torch"],
                               "texts": onnx_row["text_speedup_vs_torch"]}
    if not args.skip_quality:
        out["hm"] = quality(towers, args.data, args.home, args.features_from, args.val, args.epochs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
