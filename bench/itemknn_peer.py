"""Item-kNN (implicit's CosineRecommender and BM25Recommender) on the withheld H&M shoppers, fitted two ways:

    .venv/bin/python bench/itemknn_peer.py [--part validation|test] [--data-root ../shared/data]

- ``before_targets``: the matrix holds what a build and a replay know before the targets (every kept shopper's
  purchases and the withheld shoppers' days before their last one), as ``bench/withheld.py`` gives ``recsys``;
- ``with_target_days``: the withheld shoppers' last days are in the matrix too, as when a peer is fitted on the
  replayed files whole.

Lists leave out what the shopper already bought (implicit's ``filter_already_liked_items``), so every hit is a target
new to the shopper. The issue's item-kNN figure (recall@20 0.057 on other withheld shoppers, "never repeats") is
what the second fit gives here; the first, the fair one, finds almost no new target. Prints one JSON object and
writes bench/results/itemknn_peer_hm_<part>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import exit_if_unusable, require_files  # noqa: E402

from recsys.evaluation.metrics import per_user  # noqa: E402
from recsys.evaluation.splits import user_part  # noqa: E402

K = 20


def withheld(events: pd.DataFrame, part: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(known before the targets, the withheld shoppers' target days, the withheld shoppers' earlier days)."""
    held_mask = events.customer_id.map(lambda u: user_part(u) == part)
    held = events[held_mask]
    last = held.groupby("customer_id").day.transform("max")
    before, target = held[held.day < last], held[held.day == last]
    target = target[target.customer_id.isin(set(before.customer_id))]  # at least one earlier day (min_history 1)
    return pd.concat([events[~held_mask], before]), target, before


def fit_and_rank(train: pd.DataFrame, users: list[str], kind: str) -> list[list[str]]:
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
    from threadpoolctl import threadpool_limits

    items = np.array(sorted(train.article_id.unique()))
    uids = sorted(train.customer_id.unique())
    u_of, i_of = {u: n for n, u in enumerate(uids)}, {a: n for n, a in enumerate(items)}
    m = sp.csr_matrix((np.ones(len(train), np.float32),
                       (train.customer_id.map(u_of).to_numpy(), train.article_id.map(i_of).to_numpy())),
                      shape=(len(uids), len(items)))
    m.data[:] = 1.0  # bought or not: repeated rows of a purchase count once
    model = (CosineRecommender if kind == "cosine" else BM25Recommender)(K=K)
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit's own note that its BM25 weighting hands it a COO matrix
        model.fit(m, show_progress=False)
        out = []
        for u in users:
            ids, _ = model.recommend(u_of[u], m[u_of[u]], N=K, filter_already_liked_items=True)
            out.append(list(items[ids]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("validation", "test"), default="validation")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    source = args.data_root / "hm" / "transactions.csv"
    exit_if_unusable(lambda: require_files("--data-root", args.data_root, source,
                                           hint="give the folder holding hm/ (../shared/data)"))
    events = pd.read_csv(source, dtype={"article_id": str, "customer_id": str})
    events["day"] = pd.to_datetime(events.t_dat)
    known, target, before = withheld(events, args.part)
    users = sorted(target.customer_id.unique())
    targets = [set(g) for _, g in target.groupby("customer_id").article_id]
    history = before.groupby("customer_id").article_id.agg(set)
    new = [t - history[u] for u, t in zip(users, targets, strict=True)]
    out: dict[str, Any] = {"part": args.part, "users": len(users), "targets": int(sum(map(len, targets))),
                           "new_to_user_targets": int(sum(map(len, new))), "k": K}
    for fit, train in (("before_targets", known), ("with_target_days", events)):
        for kind in ("cosine", "bm25"):
            recs = fit_and_rank(train, users, kind)
            with_new = [i for i, t in enumerate(new) if t]
            out[f"{kind}_{fit}"] = {
                "recall": round(float(per_user(recs, [list(t) for t in targets], K).recall.mean()), 4),
                "new_to_user_recall": round(float(per_user([recs[i] for i in with_new],
                                                           [list(new[i]) for i in with_new], K).recall.mean()), 4)}
    out["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    (ROOT / "bench" / "results" / f"itemknn_peer_hm_{args.part}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
