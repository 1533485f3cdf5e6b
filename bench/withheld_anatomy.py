"""Where the served ranker's recall on withheld shoppers comes from, and what the candidates cannot reach.

Run on a store built by ``bench/withheld.py`` (its replayed shoppers stored), with that run's withheld file::

    RECSYS_HOME=<scratch>/withheld_hm_validation/home .venv/bin/python bench/withheld_anatomy.py \\
        <scratch>/withheld_hm_validation/withheld_transactions.csv [--ensemble V1,V2,V3]

Every shopper is ranked through ``Recommender.recommend`` at their target time, as ``recsys evaluate --test-events``
does, and the candidates and scores of that very request are kept. Printed as one JSON object:

- ``new_to_user``: targets not in the shopper's history: how many the candidates hold (``reached``), by source, the
  model's rank of those reached (quantiles), and how many the list holds;
- ``repeats``: targets already in the history: in the list, and for each one missed its model rank, its place in
  the history and how many repeats the list already holds (the repeat-share cap) or other colours of its product
  (the variant cap);
- ``variants``: new targets that are another colour of a product in the history, the same way;
- ``sells_now``: a non-personal signal tested offline, the likeness of each item to what anyone bought in the 14 /
  30 days before the target day (mean of the 5 best cosines, fused vectors), alone and summed (z-scores) with the
  shopper's own likeness (max cosine to the last 10 items): the share of new-to-user and of cold targets (never
  sold before the target day) in the top 20 / 100 / 300 of the catalogue, the shopper's own items left out;
- ``--ensemble``: the served ranker's scores replaced by the mean of the nets of these saved rankers (versions under
  ``$RECSYS_HOME/rankers``, same statistics and features), with the evaluation's recall beside each alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import exit_if_unusable, require_built_settings, require_test_events  # noqa: E402

from recsys.cli.pipeline import open_store  # noqa: E402
from recsys.config import Settings  # noqa: E402
from recsys.evaluation.splits import read_test_events, split_test_events  # noqa: E402
from recsys.ranking import pipeline as P  # noqa: E402
from recsys.service import Recommender  # noqa: E402

DEPTHS = (20, 100, 300)


def quantiles(x: list[int]) -> list[float] | None:
    return [round(float(q), 1) for q in np.percentile(x, [10, 25, 50, 75, 90])] if x else None


def anatomy(rec: Recommender, split: Any) -> dict[str, Any]:
    """Run every shopper's request once, keeping its candidates and scores."""
    kept: dict[str, Any] = {}
    run = P.RankingPipeline._run

    def capture(self: P.RankingPipeline, reqs: list[Any]) -> Any:
        prepared = [self._prepare(r) for r in reqs]
        kept["cands"] = prepared[0][0]
        kept["scores"] = self.scores([e for _, e in prepared], [c for c, _ in prepared])[0]
        return run(self, reqs)

    P.RankingPipeline._run = capture  # type: ignore[method-assign]
    ids = rec.generations.current().ranker.table.ids  # type: ignore[union-attr]
    new: Counter[str] = Counter()
    reach_by: Counter[str] = Counter()
    ranks: list[int] = []
    repeats: dict[str, Any] = {"targets": 0, "in_list": 0, "missed": []}
    variants: dict[str, Any] = {"targets": 0, "reached": 0, "in_list": 0, "ranks": []}
    for u in split.users:
        top = [r.item_id for r in rec.recommend(u, 20, now=split.target_time[u].to_pydatetime(), fresh=True)]
        cands, s = kept["cands"], kept["scores"]
        rank = np.empty(len(s), int)
        rank[np.argsort(-s)] = np.arange(len(s))
        at = {ids[r]: i for i, r in enumerate(cands.rows)}
        hist = split.histories[u].sort_values("ts")["item_id"].astype(str).tolist()[::-1]
        owned, groups = set(hist), {h[:7] for h in hist}
        for t in split.targets[u]:
            i = at.get(t)
            if t in owned:
                repeats["targets"] += 1
                if t in top:
                    repeats["in_list"] += 1
                else:
                    repeats["missed"].append({"rank": None if i is None else int(rank[i]), "history_pos": hist.index(t),
                                              "repeats_in_list": sum(x in owned for x in top),
                                              "same_product_in_list": sum(x[:7] == t[:7] for x in top)})
                continue
            new["targets"] += 1
            new["in_list"] += t in top
            if i is not None:
                new["reached"] += 1
                reach_by.update(cands.sources_of(i))
                ranks.append(int(rank[i]))
            if t[:7] in groups:  # H&M: the first 7 digits of an article id are its product code
                variants["targets"] += 1
                variants["in_list"] += t in top
                if i is not None:
                    variants["reached"] += 1
                    variants["ranks"].append(int(rank[i]))
    P.RankingPipeline._run = run  # type: ignore[method-assign]
    by_source = dict(reach_by.most_common())
    return {"new_to_user": {**new, "reached_by_source": by_source, "rank_quantiles": quantiles(ranks)},
            "repeats": repeats, "variants": variants}


def sells_now(rec: Recommender, split: Any, train: pd.DataFrame) -> dict[str, Any]:
    table = rec.generations.current().ranker.table  # type: ignore[union-attr]
    v = table.fused / np.linalg.norm(table.fused, axis=1, keepdims=True)
    before = pd.concat([train, *(split.histories[u] for u in split.users)])
    ev_ts, ev_item = before["ts"].to_numpy(), before["item_id"].astype(str).map(table.index).to_numpy()
    first = before.groupby("item_id")["ts"].min()
    found = {kind: {name: dict.fromkeys(DEPTHS, 0) for name in ("own", "now14", "now30", "own+now14", "own+now30")}
             for kind in ("new_to_user", "cold")}
    total = Counter[str]()
    z = lambda x: (x - x.mean()) / (x.std() + 1e-9)  # noqa: E731
    rng = np.random.default_rng(0)
    for u in split.users:
        now = split.target_time[u]
        h = split.histories[u].sort_values("ts")["item_id"].astype(str).tolist()[::-1]
        rows = [table.index[i] for i in dict.fromkeys(h) if i in table.index][:10]
        new = [t for t in split.targets[u] if t not in h and t in table.index]
        if not new or not rows:
            continue
        own = (v @ v[rows].T).max(axis=1)
        score = {"own": own}
        for days in (14, 30):
            recent = ev_item[(ev_ts < now) & (ev_ts >= now - pd.Timedelta(days=days))]
            recent = recent[~pd.isna(recent)].astype(int)
            if len(recent) > 300:
                recent = rng.choice(recent, 300, replace=False)
            sims = v @ v[recent].T if len(recent) else np.zeros((len(v), 1))
            score[f"now{days}"] = np.sort(sims, axis=1)[:, -min(5, sims.shape[1]):].mean(axis=1)
            score[f"own+now{days}"] = z(own) + z(score[f"now{days}"])
        cold = [t for t in new if not (t in first.index and first[t] < now)]
        for name, sc in score.items():
            sc = sc.copy()
            sc[rows] = -np.inf
            pos = np.empty(len(sc), int)
            pos[np.argsort(-sc)] = np.arange(len(sc))
            for kind, ts in (("new_to_user", new), ("cold", cold)):
                for d in DEPTHS:
                    found[kind][name][d] += sum(pos[table.index[t]] < d for t in ts)
        total.update({"new_to_user": len(new), "cold": len(cold)})
    def shares(kind: str, by: dict[int, int]) -> dict[str, float]:
        return {f"top{d}": round(c / max(total[kind], 1), 4) for d, c in by.items()}

    return {kind: {"targets": total[kind], **{name: shares(kind, by) for name, by in found[kind].items()}}
            for kind in found}


def ensemble(rec: Recommender, test_events: Path, versions: list[str]) -> dict[str, Any]:
    from recsys.jobs import Jobs
    from recsys.ranking.forward import NumpyRanker

    home = Path(rec.settings.home)
    nets = {}
    for ver in versions:
        net = P.RankingPipeline.load(home / "rankers" / ver).net
        if net is None:
            raise SystemExit(f"ranker {ver} has no network to average")
        nets[ver] = NumpyRanker.of(net)
    scores = P.RankingPipeline.scores

    def with_members(members: list[Any]) -> float:
        def mean_scores(self: P.RankingPipeline, examples: list[Any], cands: list[Any], runtime: str = "auto") -> Any:
            vu = self._vec_unit
            return [np.mean([f(vu[e.hist_rows], e.hist_types, e.hist_age, vu[e.cand_rows], e.feats, unit=True)
                             for f in members], axis=0) for e in examples]
        P.RankingPipeline.scores = mean_scores  # type: ignore[method-assign]
        try:
            return float(Jobs(rec).evaluate(20, test_events=test_events, fmt="hm")["metrics"]["recall"])
        finally:
            P.RankingPipeline.scores = scores  # type: ignore[method-assign]

    alone = {ver: with_members([f]) for ver, f in nets.items()}
    return {"alone": alone, "mean_of_alone": round(float(np.mean(list(alone.values()))), 6),
            "ensemble": with_members(list(nets.values()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("test_events", type=Path)
    ap.add_argument("--ensemble", default="", help="comma-separated ranker versions to average")
    args = ap.parse_args()
    exit_if_unusable(lambda: require_test_events(args.test_events))  # before the store is opened
    require_built_settings()
    rec = Recommender(Settings(), open_store())
    table = rec.generations.current().ranker.table  # type: ignore[union-attr]
    test = read_test_events(args.test_events, "hm")
    split = split_test_events(test, "last_day", train_events=test.iloc[:0], known_users=set(),
                              known_items=set(table.ids))
    from recsys.store.queries import evaluation_users, events_frame

    with rec.store.session() as s:
        held, train = evaluation_users(s), events_frame(s)
    out: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "users": len(split.users),
                           **anatomy(rec, split),
                           "sells_now": sells_now(rec, split, train[~train["user_id"].isin(held)])}
    if args.ensemble:
        out["ensemble"] = ensemble(rec, args.test_events, args.ensemble.split(","))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
