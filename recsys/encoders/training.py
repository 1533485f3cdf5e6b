"""Contrastive fitting of projection heads on cached tower features (pure arrays in, heads out).

Loss: the symmetric CLIP loss between each image and its item's fused text vector, plus, per text field, a
multi-positive CLIP loss between images and that field's text alone (items sharing a value, e.g. colour "Black", are
all positives). The second term is what makes one-word queries ("black", "dress") find images. Fields are dropped at
random from the fused text so items with thin text still line up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recsys.encoders.heads import Heads

log = logging.getLogger(__name__)

RECALL_K = 10
"""The k of the held-out recall ``encoder fit`` reports."""


@dataclass
class FitParams:
    epochs: int = 15
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.05
    aux_weight: float = 1.0
    field_dropout: float = 0.25
    feature_noise: float = 0.1
    val_pairs: int = 1000
    seed: int = 0


@dataclass
class PairData:
    """Training pairs: image features, and per item the indices of its field texts in ``text_table``."""

    item_ids: list[str]
    image: np.ndarray
    """(n, image_dim) float32."""
    text_table: np.ndarray
    """(m, text_dim) float32: features of each distinct field text."""
    field_idx: np.ndarray
    """(n, k) int64 rows of text_table, -1 where the item lacks the field."""
    field_w: np.ndarray
    """(n, k) float32 field weights."""
    fields: list[str] = field(default_factory=list)

    def subset(self, rows: np.ndarray) -> PairData:
        return PairData([self.item_ids[i] for i in rows], self.image[rows], self.text_table, self.field_idx[rows],
                        self.field_w[rows], self.fields)

    def __len__(self) -> int:
        return len(self.item_ids)


def fused_text(heads: Heads, table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor,
               drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused text vectors (n, d) for rows described by idx/w (fields in ``drop`` left out), plus the unit vectors
    of the distinct texts (u, d) and each field's row among them (n, k; -1 where absent)."""
    valid = idx >= 0
    uniq, inv = torch.unique(idx.clamp_min(0), return_inverse=True)
    vecs = F.normalize(heads.text(table[uniq]), dim=-1)
    use = valid if drop is None else valid & ~drop
    fused = F.normalize((vecs[inv] * (w * use)[..., None]).sum(1), dim=-1)
    return fused, vecs, torch.where(valid, inv, -1)


def clip_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * a @ b.T
    labels = torch.arange(len(a))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def multi_positive_loss(img: torch.Tensor, vecs: torch.Tensor, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CLIP loss of images against the distinct texts of one field; every image sharing a text is a positive.

    ``ids`` (n,) indexes ``vecs`` (-1: the item lacks the field). Image->text is a classification over the batch's
    distinct values; text->image spreads the target evenly over the images that have the value.
    """
    keep = ids >= 0
    if keep.sum() < 2:
        return img.sum() * 0
    img, ids = img[keep], ids[keep]
    present, col = torch.unique(ids, return_inverse=True)
    logits = scale * img @ vecs[present].T  # (b, u)
    i2t = F.cross_entropy(logits, col)
    target = F.one_hot(col, len(present)).T.float()
    target = target / target.sum(1, keepdim=True)
    t2i = -(target * logits.T.log_softmax(1)).sum(1).mean()
    return (i2t + t2i) / 2


def recall_at(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Share of rows i of ``a`` whose match b[i] ranks in the top k of b (ties count against)."""
    sims = a @ b.T
    own = np.diag(sims)
    rank = (sims > own[:, None]).sum(1)
    return float((rank < k).mean())


@torch.no_grad()
def evaluate(heads: Heads, data: PairData, k: int = RECALL_K) -> dict[str, float]:
    """Cross-modal recall@k on ``data``; empty with ``k`` or fewer pairs, where every pair ranks in the top k by
    construction (random vectors scored 1.0)."""
    if len(data) <= k:
        return {}
    heads.eval()
    img = F.normalize(heads.image(torch.from_numpy(data.image)), dim=-1).numpy()
    txt, _, _ = fused_text(heads, torch.from_numpy(data.text_table), torch.from_numpy(data.field_idx),
                           torch.from_numpy(data.field_w))
    t = txt.numpy()
    return {f"image_to_text_recall@{k}": recall_at(img, t, k), f"text_to_image_recall@{k}": recall_at(t, img, k)}


def train_heads(heads: Heads, train: PairData, params: FitParams, val: PairData | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """Fit ``heads`` in place; returns the validation metrics (and timings)."""
    g = torch.Generator().manual_seed(params.seed)
    torch.manual_seed(params.seed)
    img_all = torch.from_numpy(train.image)
    heads.image.set_stats(img_all)
    heads.text.set_stats(torch.from_numpy(train.text_table))
    table = torch.from_numpy(train.text_table)
    idx_all, w_all = torch.from_numpy(train.field_idx), torch.from_numpy(train.field_w)
    n = len(train)
    bs = min(params.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = params.epochs * steps_per_epoch
    opt = torch.optim.AdamW(heads.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=params.lr, total_steps=total, pct_start=0.1)
    t0, step = time.perf_counter(), 0
    for _epoch in range(params.epochs):
        heads.train()
        perm = torch.randperm(n, generator=g)
        for s in range(steps_per_epoch):
            rows = perm[s * bs : (s + 1) * bs]
            x = img_all[rows]
            if params.feature_noise:
                x = x + params.feature_noise * heads.image.sigma * torch.randn(x.shape, generator=g)
            img = F.normalize(heads.image(x), dim=-1)
            idx, w = idx_all[rows], w_all[rows]
            drop = (torch.rand(idx.shape, generator=g) < params.field_dropout) & (idx >= 0)
            keep_one = (idx >= 0) & ~drop
            # Never drop every field of an item.
            drop &= keep_one.any(1, keepdim=True)
            fused, vecs, inv = fused_text(heads, table, idx, w, drop)
            scale = heads.logit_scale.exp().clamp(max=100)
            loss = clip_loss(img, fused, scale)
            if params.aux_weight:
                aux = torch.stack([multi_positive_loss(img, vecs, inv[:, f], scale) for f in range(idx.shape[1])])
                loss = loss + params.aux_weight * aux.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                log.info("step %d/%d loss %.3f (%.1fs)", step, total, float(loss.detach()), time.perf_counter() - t0)
            if progress:
                progress(step, total)
    heads.eval()
    metrics = {"train_seconds": round(time.perf_counter() - t0, 2), "steps": float(total),
               "final_loss": float(loss.detach())}
    if val is not None and len(val):
        metrics.update(evaluate(heads, val))
    log.info("heads fitted: %s", metrics)
    return metrics
