"""The recall cost of diversity: MMR weight vs recall@20, NDCG@20 and intra-list similarity, on a built store.

One ranker is fitted on the training part of the temporal split (as `recsys evaluate` does), then the same users of
the validation part (a sweep is tuning: the test part is not looked at) are scored at several diversity weights.
Intra-list similarity is the mean pairwise cosine of the fused vectors of each list. Prints one JSON object.

    RECSYS_HOME=/path/to/built/home python bench/diversity.py [--k 20] [--weights 0,0.2,0.4,0.6,0.8]
                                                              [--part validation]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _homes import require_built_settings  # bench/, on sys.path
from threadpoolctl import threadpool_limits

from recsys.evaluation import summarize, temporal_split
from recsys.ranking import RankingPipeline
from recsys.service import Recommender
from recsys.serving.generations import vectors_of_index
from recsys.store.queries import events_frame, items_frame


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--weights", default="0,0.2,0.4,0.6,0.8")
    ap.add_argument("--part", default="validation", choices=["validation"],
                    help="the users scored: validation only (a sweep is tuning; the test part is never looked at)")
    args = ap.parse_args()
    require_built_settings()  # Recommender() would create an empty store at a mistyped RECSYS_HOME
    rec = Recommender()
    reader = rec.index
    vectors = vectors_of_index(rec.settings, reader)
    row = {i: r for r, i in enumerate(vectors.item_ids)}
    with rec.store.session() as s:
        events, items = events_frame(s), items_frame(s)
    split = temporal_split(events, "auto", part=args.part)
    t0 = time.perf_counter()
    # the co-purchase space (when on) sees only the events before every target, as in `recsys evaluate`
    pipe = RankingPipeline.fit(split.train, items, vectors, rec.settings, search=reader,
                               cobuy_before=split.earliest_target)
    fit_s = time.perf_counter() - t0
    hists = [split.histories[u] for u in split.users]
    now = [split.target_time[u].to_pydatetime() for u in split.users]
    targets = [split.targets[u] for u in split.users]
    out = []
    for w in (float(x) for x in args.weights.split(",")):
        with threadpool_limits(1):
            recs = pipe.recommend_many([h if len(h) else None for h in hists], args.k, diversity=w, now=now)
        lists = [[r.item_id for r in rs] for rs in recs]
        ils = []
        for ids in lists:
            if len(ids) > 1:
                v = vectors.fused[[row[i] for i in ids]]
                sim = v @ v.T
                n = len(ids)
                ils.append((sim.sum() - np.trace(sim)) / (n * (n - 1)))
        m = summarize(lists, targets, args.k, len(vectors.item_ids))
        out.append({"diversity": w, "recall": m["recall"], "ndcg": m["ndcg"], "coverage": m["coverage"],
                    "intra_list_similarity": round(float(np.mean(ils)), 4)})
    print(json.dumps({"bench": "diversity", "k": args.k, "protocol": split.protocol, "part": args.part,
                      "users": len(split.users), "fit_s": round(fit_s, 1), "sweep": out}))


if __name__ == "__main__":
    main()
