"""The served statistics against a recount of every stored event, per shopper, on a withheld build.

Run on a store built by ``bench/withheld.py`` (its withheld users replayed), with that run's withheld file::

    RECSYS_HOME=<scratch>/withheld_ml100k_validation/home .venv/bin/python bench/live_stats.py \\
        <scratch>/withheld_ml100k_validation/withheld_u.data --format movielens

After the replay the served ranker's statistics are recounted here over every stored event, the replayed shoppers'
included: a live shop where they are real shoppers (``ranking.live_stats_s`` itself leaves evaluation users out, so
that an evaluation run changes no real shopper's list). Each request's statistics are then taken from the training's
plus the shopper's own events (the served default) or from the recount, wholly or one statistic at a time
(``popularity``, ``users``, ``trends``, ``cooc``, ``first_sale``), all but co-occurrence (``all_but_cooc``: what
``ranking.live_stats_s`` serves, the training's pairs kept) or all, with the same ranker and the same candidates code.
Prints one JSON object: recall@20 per setting, and for the full recount the per-shopper paired difference (users
better / worse, bootstrap interval). The catalogue-wide popular and trending candidate lists come from the recount in
every row (they are the generator's), so ``served`` can differ from ``recsys evaluate``'s figure by a shopper or two;
compare the rows with each other.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import exit_if_unusable, require_built_settings, require_test_events  # noqa: E402

from recsys.cli.pipeline import open_store  # noqa: E402
from recsys.config import Settings  # noqa: E402
from recsys.evaluation.splits import read_test_events, split_test_events  # noqa: E402
from recsys.jobs import Jobs  # noqa: E402
from recsys.ranking import context as C  # noqa: E402
from recsys.ranking import pipeline as P  # noqa: E402
from recsys.service import Recommender  # noqa: E402
from recsys.store.queries import events_frame  # noqa: E402

PARTS = {"popularity": ("pop",), "users": ("users",), "trends": ("trend7", "trend30"), "cooc": ("cooc",),
         "first_sale": ("first_ts",)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("test_events", type=Path)
    ap.add_argument("--format", default="movielens", choices=["hm", "movielens"])
    args = ap.parse_args()
    exit_if_unusable(lambda: require_test_events(args.test_events))  # before the store is opened
    require_built_settings()
    rec = Recommender(Settings(), open_store())
    Jobs(rec).evaluate(20, test_events=args.test_events, fmt=args.format)  # the replay
    served = rec.generations.current()
    trained = served.ranker.stats  # type: ignore[union-attr]
    with rec.store.session() as s:
        events = events_frame(s)  # every stored event, the replayed shoppers' included (the settings below pick)
    recount = served.ranker.with_events(events, pairs=True)  # type: ignore[union-attr]
    recount.stats.counted_through = int(events["event_id"].max()) if len(events) else None  # see ItemStats
    recounted = recount.stats
    # served from here on, as the service would after a recount: the catalogue-wide lists are the recount's
    rec.generations._served = dataclasses.replace(served, ranker=recount, stats_version="bench")
    if recounted.counted_users == trained.counted_users:
        raise SystemExit("the recount did not happen: no replayed users in this store?")
    make = C.make_context
    live: set[str] = set()

    def context(h: Any, now: float, stats: Any, p: Any) -> C.Context:
        # the served default: the training's statistics, which never counted a withheld shopper, plus the
        # shopper's own events counted per request (``h`` itself is marked as counted by the recount)
        base = make(dataclasses.replace(h, uncounted_from=-np.inf, pairs_uncounted_from=None), now, trained, p)
        if not live:
            return base
        counted = make(h, now, recounted, p)
        return dataclasses.replace(base, **{f: getattr(counted, f) for name in live for f in PARTS[name]})

    P.make_context = context  # type: ignore[assignment]
    ids = served.ranker.table.ids  # type: ignore[union-attr]
    test = read_test_events(args.test_events, args.format)
    split = split_test_events(test, "last_day" if args.format == "hm" else "last_interaction",
                              train_events=test.iloc[:0], known_users=set(), known_items=set(ids))

    def recalls() -> np.ndarray:
        out = []
        for u in split.users:
            top = {r.item_id for r in rec.recommend(u, 20, now=split.target_time[u].to_pydatetime(), fresh=True)}
            targets = set(split.targets[u])
            out.append(len(targets & top) / len(targets))
        return np.array(out)

    served_r = recalls()
    result: dict[str, Any] = {"users": len(split.users), "served": round(float(served_r.mean()), 6)}
    settings = {**{name: [name] for name in PARTS}, "all_but_cooc": [q for q in PARTS if q != "cooc"],
                "all": list(PARTS)}
    for name, parts in settings.items():
        live.clear()
        live.update(parts)
        r = recalls()
        result[f"recount_{name}"] = round(float(r.mean()), 6)
    d = r - served_r
    boot = d[np.random.default_rng(0).integers(0, len(d), (2000, len(d)))].mean(axis=1)
    result["recount_all_vs_served"] = {"difference": round(float(d.mean()), 6), "users_better": int((d > 0).sum()),
                                       "users_worse": int((d < 0).sum()),
                                       "ci": [round(float(np.quantile(boot, q)), 6) for q in (0.025, 0.975)]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
