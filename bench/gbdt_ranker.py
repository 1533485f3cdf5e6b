"""The ranker's network against LightGBM on the same training lists and features, served through the same path.

Run on a store built by ``bench/withheld.py`` (its withheld users replayed), with that run's withheld file; LightGBM
is not a dependency of recsys (``pip install lightgbm`` first)::

    RECSYS_HOME=<scratch>/withheld_hm_validation/home .venv/bin/python bench/gbdt_ranker.py \\
        <scratch>/withheld_hm_validation/withheld_transactions.csv --format hm [--seeds 0 1 2]

For each seed: ``recsys train`` (``RECSYS_RANKING__SEED``) with its training lists captured, LightGBM fitted on
those lists' feature columns (lambdarank and rank_xendcg), then ``recsys evaluate --test-events`` with the served
ranker's scores taken from the network (the served ranker), from LightGBM, or from both (z-scored per request and
added, LightGBM weighted 0.5): the same candidates, rules and list caps. The served ranker is left as the last seed
trained; run ``recsys train`` afterwards to restore the default. Prints one JSON object: recall@20, NDCG@20 and
new-to-user recall per seed and setting. Results of 2026-12-06 in docs/evaluation-log.md. ``--slots``: the network's
list with the places it gave to new items refilled in LightGBM's order (fitted on all candidates, or on the new
ones only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from _homes import require_built_settings  # noqa: E402

from recsys.cli.pipeline import open_store  # noqa: E402
from recsys.config import Settings  # noqa: E402
from recsys.ranking import pipeline as P  # noqa: E402
from recsys.ranking.features import FEATURES  # noqa: E402
from recsys.service import Recommender  # noqa: E402

PARAMS = {"metric": "ndcg", "ndcg_eval_at": [20], "learning_rate": 0.05, "num_leaves": 7, "min_data_in_leaf": 100,
          "lambda_l2": 10.0, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
          "lambdarank_truncation_level": 40, "verbose": -1, "num_threads": 2, "deterministic": True}
ROUNDS = 150


REPEAT = FEATURES.index("log_repeat")
"""A candidate the shopper already bought (or saw) has a positive repeat count."""


def lightgbm() -> Any:
    """LightGBM, imported when the comparison runs (``--help`` works without it)."""
    try:
        import lightgbm as lgb
    except ImportError:  # not a dependency of recsys: this comparison is the only user
        raise SystemExit("bench/gbdt_ranker.py needs LightGBM: .venv/bin/python -m pip install lightgbm") from None
    return lgb


def fit(examples: list[Any], objective: str, seed: int, new_only: bool = False) -> Any:
    """LightGBM on the training lists; ``new_only``: on each list's candidates new to the shopper alone (lists
    without such a positive dropped), a model of discovery only."""
    parts = []
    for e in examples:
        keep = e.feats[:, REPEAT] <= 0 if new_only else np.ones(len(e.feats), bool)
        if keep.sum() >= 2 and (not new_only or (e.labels[keep] > 0).any()):
            parts.append((e.feats[keep], e.labels[keep]))
    feats = np.concatenate([f for f, _ in parts])
    labels = (np.concatenate([lab for _, lab in parts]) > 0).astype(int)
    lgb = lightgbm()
    ds = lgb.Dataset(feats, labels, group=[len(f) for f, _ in parts], feature_name=list(FEATURES))
    return lgb.train({**PARAMS, "objective": objective, "seed": seed}, ds, num_boost_round=ROUNDS)


def slots(network: np.ndarray, other: np.ndarray, repeat: np.ndarray) -> np.ndarray:
    """The network's order with its repeats where it put them, and the places it gave to new items refilled in
    ``other``'s order of the new items (scores as negative ranks)."""
    order = np.argsort(-network, kind="stable")
    out = np.empty(len(network), np.float32)
    at_repeat = repeat[order]
    out[order[at_repeat]] = -np.flatnonzero(at_repeat)
    new = np.flatnonzero(~repeat)
    out[new[np.argsort(-other[new], kind="stable")]] = -np.flatnonzero(~at_repeat)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("test_events", type=Path)
    ap.add_argument("--format", default="hm", choices=["hm", "movielens"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--slots", action="store_true",
                    help="instead: the network's list with its new-item places reordered by LightGBM fitted on all "
                         "candidates or on those new to the shopper only")
    args = ap.parse_args()
    lightgbm()
    require_built_settings()

    captured: list[Any] = []
    fit_net = P.fit_net

    def capture(examples: list[Any], *a: Any, **kw: Any) -> Any:
        captured[:] = examples
        return fit_net(examples, *a, **kw)

    P.fit_net = capture  # type: ignore[assignment]
    mode: dict[str, Any] = {"booster": None, "weight": None}
    served_scores = P.RankingPipeline.scores

    def scores(self: Any, examples: list[Any], cands: list[Any], runtime: str = "auto") -> list[np.ndarray]:
        nn = served_scores(self, examples, cands, runtime)
        booster = mode["booster"]
        if booster is None:
            return nn
        out = []
        for e, s in zip(examples, nn, strict=True):
            g = booster.predict(e.feats, num_threads=1) if len(e.feats) else np.zeros(0)
            w = mode["weight"]
            if w == "slots":
                out.append(slots(s, g, e.feats[:, REPEAT] > 0))
            else:
                out.append((g if w is None else _z(s) + w * _z(g)).astype(np.float32))
        return out

    P.RankingPipeline.scores = scores  # type: ignore[method-assign]
    result: dict[str, Any] = {"test_events": str(args.test_events), "rounds": ROUNDS, "params": PARAMS, "seeds": {}}
    for seed in args.seeds:
        os.environ["RECSYS_RANKING__SEED"] = str(seed)
        rec = Recommender(Settings(), open_store())
        rec.jobs.train()
        rec.refresh()
        if args.slots:  # the network's repeats kept in place, its new-item places refilled by LightGBM
            runs = {"network": (None, None),
                    "slots_all": (fit(captured, "lambdarank", seed), "slots"),
                    "slots_new_only": (fit(captured, "lambdarank", seed, new_only=True), "slots")}
        else:
            boosters = {obj: fit(captured, obj, seed) for obj in ("lambdarank", "rank_xendcg")}
            runs = {"network": (None, None), "lambdarank": (boosters["lambdarank"], None),
                    "rank_xendcg": (boosters["rank_xendcg"], None),
                    "network+lambdarank": (boosters["lambdarank"], 0.5)}
        row = {}
        for name, (booster, weight) in runs.items():
            mode.update(booster=booster, weight=weight)
            r = rec.jobs.evaluate(20, test_events=args.test_events, fmt=args.format)
            new = r["slices"].get("new_to_user", {}).get("recall")
            row[name] = {"recall": r["metrics"]["recall"], "ndcg": r["metrics"]["ndcg"], "new_to_user": new}
        result["seeds"][str(seed)] = row
        print(json.dumps({"seed": seed, **row}), file=sys.stderr)
    print(json.dumps(result))


def _z(s: np.ndarray) -> np.ndarray:
    sd = float(s.std())
    return (s - s.mean()) / (sd if sd > 1e-9 else 1.0)


if __name__ == "__main__":
    main()
