"""How far candidate generation reaches: the ceiling of the ranker on a built store's validation part.

    RECSYS_HOME=/path/to/hm .venv/bin/python bench/reach.py [--part validation] [--k 20] [--out bench/results]

Fits the ranker on the split's training events exactly as ``recsys evaluate --part ...`` does, then for every
evaluated user (at their target time, every statistic as of then) reports which share of the targets the candidate
set holds at all, per source, and what the ranked top k keeps: overall, for targets new to the user (not among their
own positive history events) and for cold items (nobody had a positive training event on them before the user's
target time): the evaluator's slices. A target no source proposes cannot be recommended, however good the ranker.
Prints one JSON object (also written to ``--out``/reach_<part>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import require_built_settings  # noqa: E402

from recsys.evaluation.splits import Split, positives, temporal_split  # noqa: E402
from recsys.ranking import RankingPipeline  # noqa: E402
from recsys.ranking.candidates import SOURCES  # noqa: E402
from recsys.ranking.context import make_context  # noqa: E402
from recsys.ranking.history import day_of, history_from_frame  # noqa: E402
from recsys.service import Recommender  # noqa: E402
from recsys.serving.generations import vectors_of_index  # noqa: E402
from recsys.store import Store  # noqa: E402
from recsys.store.queries import events_frame, items_frame  # noqa: E402


def target_slices(split: Split) -> dict[str, dict[str, list[str]]]:
    """Per evaluated user, their targets new to them and their cold ones, as the evaluator's slices define them
    (``recsys.evaluation.experiment``): new to the user when not among their positive history events (a dislike is
    not taking an item); cold when nobody, the user included, had a positive training event on the item strictly
    before the user's target time (other shoppers' later purchases do not make it warm)."""
    first, never = split.first_sold(), pd.Timestamp.max
    out = {}
    for u in split.users:
        pos = positives(split.histories[u])
        seen = set(pos["item_id"].astype(str)) if len(pos) else set()
        now = split.target_time[u]
        out[u] = {"new_to_user": [t for t in split.targets[u] if t not in seen],
                  "cold_items": [t for t in split.targets[u] if first.get(t, never) >= now]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="validation", choices=["validation", "test"])
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder the JSON is written to")
    a = ap.parse_args()
    settings = require_built_settings()  # Store.open would create an empty store at a mistyped RECSYS_HOME
    rec = Recommender(settings, Store.open(settings))
    reader = rec.index
    vectors = vectors_of_index(rec.settings, reader)
    with rec.store.session() as s:
        events, items = events_frame(s), items_frame(s)
    split = temporal_split(events, "auto", part=a.part)
    pipe = RankingPipeline.fit(split.train, items, vectors, settings, search=reader,
                               cobuy_before=split.earliest_target)
    table, kinds_of = pipe.table, target_slices(split)
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
        for t in split.targets[u]:
            kinds = ["all", *(s for s in slices[1:] if t in kinds_of[u][s])]
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
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"reach_{a.part}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
