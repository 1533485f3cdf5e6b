"""How far candidate generation reaches: the ceiling of the ranker on a built store's validation part.

    RECSYS_HOME=/path/to/hm .venv/bin/python bench/reach.py [--part validation] [--k 20]

Fits the ranker on the split's training events exactly as ``recsys evaluate --part ...`` does, then for every
evaluated user (at their target time, every statistic as of then) reports which share of the targets the candidate
set holds at all, per source, and what the ranked top k keeps: overall, for targets new to the user and for cold items
(nobody bought them in training). A target no source proposes cannot be recommended, however good the ranker.
Prints one JSON object (also written to bench/results/reach_<part>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.config import get_settings  # noqa: E402
from recsys.evaluation.splits import temporal_split  # noqa: E402
from recsys.ranking import RankingPipeline  # noqa: E402
from recsys.ranking.candidates import SOURCES  # noqa: E402
from recsys.ranking.context import make_context  # noqa: E402
from recsys.ranking.history import day_of, history_from_frame  # noqa: E402
from recsys.service import Recommender  # noqa: E402
from recsys.serving.generations import vectors_of_index  # noqa: E402
from recsys.store import Store  # noqa: E402
from recsys.store.queries import events_frame, items_frame  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="validation", choices=["validation", "test"])
    ap.add_argument("--k", type=int, default=20)
    a = ap.parse_args()
    settings = get_settings()
    rec = Recommender(settings, Store.open(settings))
    reader = rec.index
    vectors = vectors_of_index(rec.settings, reader)
    with rec.store.session() as s:
        events, items = events_frame(s), items_frame(s)
    split = temporal_split(events, "auto", part=a.part)
    pipe = RankingPipeline.fit(split.train, items, vectors, settings, search=reader)
    table, known_items = pipe.table, split.train_items
    slices = ("all", "new_to_user", "cold_items")
    reached = {s: 0 for s in slices}
    ranked = {s: 0 for s in slices}
    total = {s: 0 for s in slices}
    by_source = {s: {src: 0 for src in SOURCES} for s in slices}
    sizes = []
    for u in split.users:
        h_df = split.histories[u]
        when = split.target_time[u].to_pydatetime()
        hist = history_from_frame(h_df, table)
        ctx = make_context(hist, float(day_of(when)), pipe.stats, pipe.params)  # type: ignore[arg-type]
        cands = pipe._gen.generate(ctx)
        sizes.append(len(cands))
        pos = {table.ids[r]: i for i, r in enumerate(cands.rows)}
        top = {r.item_id for r in pipe.recommend(h_df if len(h_df) else None, a.k, now=when)}
        seen = set(h_df["item_id"].astype(str)) if len(h_df) else set()
        for t in split.targets[u]:
            kinds = ["all"] + (["new_to_user"] if t not in seen else []) + (["cold_items"] if t not in known_items
                                                                            else [])
            for s in kinds:
                total[s] += 1
                ranked[s] += t in top
                if t in pos:
                    reached[s] += 1
                    for src in cands.sources_of(pos[t]):
                        by_source[s][src] += 1
    out: dict[str, Any] = {
        "bench": "reach", "part": a.part, "users": len(split.users), "k": a.k,
        "candidates_mean": round(float(np.mean(sizes)), 1),
        "targets": total,
        "reached_by_candidates": {s: round(reached[s] / max(total[s], 1), 4) for s in slices},
        f"kept_in_top_{a.k}": {s: round(ranked[s] / max(total[s], 1), 4) for s in slices},
        "reached_by_source": {s: {src: round(n / max(total[s], 1), 4) for src, n in by_source[s].items() if n}
                              for s in slices},
    }
    Path(ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / f"reach_{a.part}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
