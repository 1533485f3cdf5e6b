"""bench/quality.py's peers: implicit ALS and BPR, and Cornac VBPR, fitted on the split's training events."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from recsys.evaluation import Batch
from recsys.evaluation.splits import Split

VBPR_EPOCHS = 30
"""Cornac's VBPR example settings (k = k2 = 10, lambda_w 1, lambda_b 0.01), batch 256, 30 epochs (CPU time)."""

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


def vbpr_peer(split: Split, vectors: Any, exclude_seen: bool, seed: int = 0) -> tuple[Batch, float]:
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
