"""How far each item space reaches the targets a shopper has never touched, on a built store's validation part.

    RECSYS_HOME=/path/to/hm .venv/bin/python bench/cobuy_space.py [--part validation]

Fits the co-purchase space (:mod:`recsys.ranking.cobuy`) on the split's training events before its earliest target
time only (``Split.train_before_targets``: the cut ``recsys evaluate`` gives the space), then for every
evaluated user ranks the catalogue by the best similarity to their last 10 distinct items (their own items left out)
in four spaces side by side: the text tower's (``content``, what the ``similar`` source uses), the encoder's fused
vectors, the co-purchase space, and the first two concatenated; then the name words (BM25 likeness of the titles,
:mod:`recsys.ranking.lexical`) and their reciprocal-rank fusion with ``content`` per latest item (what the opt-in
``hybrid`` source proposes). Reports the share of targets new to the user (not among their own positive history
events), and of cold items (nobody had a positive training event on them before the user's target time: the
evaluator's definitions), found in the top 20 / 100 / 300. Prints one JSON object (also written to
bench/results/cobuy_space_<part>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import require_built_settings  # noqa: E402
from reach import target_slices  # noqa: E402  (the evaluator's slices, shared with bench/reach.py)

from recsys.evaluation.splits import temporal_split  # noqa: E402
from recsys.ranking.catalog import ItemTable  # noqa: E402
from recsys.ranking.cobuy import CobuyProjection  # noqa: E402
from recsys.ranking.history import histories_by_user, history_from_frame  # noqa: E402
from recsys.ranking.lexical import fuse_ranked  # noqa: E402
from recsys.ranking.neighbours import top_k  # noqa: E402
from recsys.ranking.params import RankingParams  # noqa: E402
from recsys.service import Recommender  # noqa: E402
from recsys.serving.generations import vectors_of_index  # noqa: E402
from recsys.store import Store  # noqa: E402
from recsys.store.queries import events_frame, items_frame  # noqa: E402

DEPTHS = (20, 100, 300)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="validation", choices=["validation", "test"])
    a = ap.parse_args()
    settings = require_built_settings()  # Store.open would create an empty store at a mistyped RECSYS_HOME
    rec = Recommender(settings, Store.open(settings))
    vectors = vectors_of_index(settings, rec.index)
    with rec.store.session() as s:
        events, items = events_frame(s), items_frame(s)
    split = temporal_split(events, "auto", part=a.part)
    table = ItemTable.build(vectors, items)
    p = RankingParams.from_settings(settings)
    t0 = time.time()
    # one fitted matrix, not counted as of each target: only what came before every target (as recsys evaluate does)
    fit_events = split.train_before_targets()
    proj = CobuyProjection.fit(table, histories_by_user(fit_events, table), dim=p.cobuy_dim,
                               window_days=p.cobuy_window_days, epochs=p.cobuy_epochs, seed=p.seed)
    fit_s = time.time() - t0
    if proj is None:
        raise SystemExit("too few co-purchases in the training events to fit the space")
    b = proj.transform(table)
    spaces = {"content": table.content, "fused": table.fused, "cobuy": b,
              "content+cobuy": np.concatenate([table.content, b], axis=1)}
    names = table.names
    if names is None:
        raise SystemExit("the items have no titles: no name words to compare")
    everyone = np.arange(table.n)
    found = {name: {d: {"new_to_user": 0, "cold_items": 0} for d in DEPTHS}
             for name in [*spaces, "name_words", "hybrid"]}
    total = {"new_to_user": 0, "cold_items": 0}
    kinds_of = target_slices(split)  # the evaluator's new-to-user and cold-item definitions
    for u in split.users:
        h = history_from_frame(split.histories[u], table)
        if not len(h):
            continue
        rev = h.rows[::-1]
        _, first = np.unique(rev, return_index=True)
        latest = rev[np.sort(first)][:10]
        own = np.unique(h.rows)
        new = [table.index[t] for t in kinds_of[u]["new_to_user"] if t in table.index]
        cold = [table.index[t] for t in kinds_of[u]["cold_items"] if t in table.index]
        total["new_to_user"] += len(new)
        total["cold_items"] += len(cold)
        ranked: dict[str, np.ndarray] = {}
        for name, v in spaces.items():
            sc = (v[latest] @ v.T).max(axis=0)
            sc[own] = -np.inf
            ranked[name] = np.argsort(-sc, kind="stable")[: max(DEPTHS)]
        sc = names.likeness(latest, everyone).max(axis=0)
        sc[own] = -np.inf
        order = np.argsort(-sc, kind="stable")[: max(DEPTHS)]
        ranked["name_words"] = order[sc[order] > 0]
        per_item = names.nearest(latest.tolist(), 2 * max(DEPTHS))
        content = table.content
        lists = [(top_k(content[r] @ content.T, 2 * max(DEPTHS)), 0.5) for r in latest.tolist()]
        lists += [(per_item[r], 0.5) for r in latest.tolist()]
        fused = fuse_ranked(lists, 2 * max(DEPTHS) + len(own))
        ranked["hybrid"] = fused[~np.isin(fused, own)][: max(DEPTHS)]
        for name, order in ranked.items():
            for d in DEPTHS:
                top = set(order[:d].tolist())
                found[name][d]["new_to_user"] += sum(t in top for t in new)
                found[name][d]["cold_items"] += sum(t in top for t in cold)
    out = {
        "bench": "cobuy_space", "part": a.part, "users": len(split.users), "targets": total,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fitted_before": str(split.earliest_target), "fit_events": len(fit_events),
        "fit_seconds": round(fit_s, 1), "params": {"dim": p.cobuy_dim, "window_days": p.cobuy_window_days,
                                                   "epochs": p.cobuy_epochs},
        "reach": {name: {f"top_{d}": {s: round(n / max(total[s], 1), 4) for s, n in r.items()} for d, r in by.items()}
                  for name, by in found.items()},
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / f"cobuy_space_{a.part}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
