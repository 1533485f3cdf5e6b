"""Run recommenders over one split and produce the evaluation JSON of DESIGN.md section 4.

    split = temporal_split(events, "hm")
    recs = {"ours": Batch(lambda users, hists, k: ...), **make_baselines(split, ids, vectors)}
    result = run_evaluation(split, recs, k=20, catalogue_size=len(ids))

A recommender is either a callable ``(user_id, history, k) -> list[str]`` called once per test user, or a
:class:`Batch` wrapping ``(user_ids, histories, k) -> list[list[str]]`` for models that score many users at once.
``result["metrics"]`` are those of ``main`` ("ours"); the baselines (``BASELINES``) go under "baselines", anything
else (implicit, Cornac, ablations) under "peers". Slices repeat recall/NDCG/hit rate/MRR for every recommender on the
cold-item targets, the cold users, the targets new to the user and the repeats.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.evaluation.metrics import METRICS, PerUser, coverage, dedupe, per_user
from recsys.evaluation.splits import Split, positives

log = logging.getLogger(__name__)

Recommend = Callable[[str, pd.DataFrame, int], list[str]]
BatchRecommend = Callable[[list[str], list[pd.DataFrame], int], list[list[str]]]
BASELINES = ("popular", "item_cooccurrence", "content_knn", "content_peer")
COLD_USER_MAX_EVENTS = 5
"""A cold user has at most this many history (training) events before the target time."""


@dataclass(frozen=True)
class Batch:
    """Marks a recommender that takes all test users at once: ``fn(user_ids, histories, k)``."""

    fn: BatchRecommend


def recommend_all(split: Split, rec: Recommend | Batch, k: int) -> list[list[str]]:
    """Every test user's top-``k`` list (deduplicated), in ``split.users`` order."""
    hists = [split.histories[u] for u in split.users]
    if isinstance(rec, Batch):
        lists = rec.fn(list(split.users), hists, k)
        if len(lists) != len(split.users):
            raise ValueError(f"batch recommender returned {len(lists)} lists for {len(split.users)} users")
    else:
        lists = [rec(u, h, k) for u, h in zip(split.users, hists, strict=True)]
    return [dedupe(r, k) for r in lists]


def _slice_targets(split: Split) -> tuple[list[list[str]], np.ndarray, int]:
    """Cold-item targets per user, the users having any, their count. A target is cold when nobody (the user
    included) had a positive training event on it strictly before the user's target time: other shoppers' events
    after it are in ``split.train`` (leave-last-out), and an item first sold on the target day is a new arrival."""
    first = split.first_sold()
    never = pd.Timestamp.max

    def cold_for(u: str) -> list[str]:
        now = split.target_time[u]
        return [t for t in split.targets[u] if first.get(t, never) >= now]

    cold = [cold_for(u) for u in split.users]
    mask = np.array([len(c) > 0 for c in cold], dtype=bool)
    return cold, mask, int(sum(len(c) for c in cold))


def _history_targets(split: Split, *, seen_before: bool) -> tuple[list[list[str]], np.ndarray, int]:
    """Targets in (``seen_before``) or not in the user's own history, the users having any, their count. A disliked
    item is not "in the history": a target bought after a dislike is new to what the shopper has taken."""
    picked = []
    for u in split.users:
        h = positives(split.histories[u])
        seen = set(h["item_id"].astype(str)) if len(h) else set()
        picked.append([t for t in split.targets[u] if (t in seen) == seen_before])
    mask = np.array([len(c) > 0 for c in picked], dtype=bool)
    return picked, mask, int(sum(len(c) for c in picked))


BOOTSTRAP_ROUNDS = 2000
BOOTSTRAP_CHUNK = 1 << 21
"""Resampled user indices drawn at a time (16 MiB of int64): the bootstrap's memory stays flat however many users
there are. Chunks are whole rounds, and the generator gives the same indices whether drawn at once or in pieces."""


MIN_INTERVAL_USERS = 2
"""Below this many users there is no interval: every resample of one user is that user, a zero-width interval."""
ROUGH_INTERVAL_USERS = 30
"""Below this many users the intervals carry a note: a bootstrap over few users is too narrow, and moves by user."""


def interval_note(n: int) -> str | None:
    """What to say of intervals over ``n`` users, or None when there are enough of them."""
    if n < MIN_INTERVAL_USERS:
        return (f"no interval: {n} evaluated user(s); a bootstrap over users needs at least {MIN_INTERVAL_USERS} "
                "(resampling one user gives the same value every round, a zero-width interval that says nothing)")
    if n < ROUGH_INTERVAL_USERS:
        return (f"rough intervals: only {n} evaluated users (fewer than {ROUGH_INTERVAL_USERS}); a bootstrap over "
                "so few users understates the uncertainty, so read them as a rough guide, not a test")
    return None


def paired_intervals(main: np.ndarray, others: Mapping[str, np.ndarray], *, rounds: int = BOOTSTRAP_ROUNDS,
                     seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap over users (the same resampled users for every model, hence paired).

    ``main`` and each of ``others``: per-user metric values, aligned by user. Returns the main model's interval and,
    per other model, the mean difference (main - other), its interval and the share of rounds where main was ahead.
    ``note`` (:func:`interval_note`): below :data:`MIN_INTERVAL_USERS` users the intervals and shares are None and
    it says why; below :data:`ROUGH_INTERVAL_USERS` it says they are rough; None otherwise.
    """
    n = len(main)
    note = interval_note(n)
    if n < MIN_INTERVAL_USERS:
        diffs0 = {name: {"difference": round(float((main - o).mean()), 6) if n else None, "ci": None,
                         "share_ahead": None} for name, o in others.items()}
        return {"level": level, "rounds": 0, "users": n, "main": None, "differences": diffs0, "note": note}
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2

    def ci(x: np.ndarray) -> list[float]:
        return [round(float(np.quantile(x, lo_q)), 6), round(float(np.quantile(x, hi_q)), 6)]

    boot = _resampled_means([main, *(main - o for o in others.values())], rounds, seed)
    boot_main = boot[0]
    diffs = {}
    for (name, o), d in zip(others.items(), boot[1:], strict=True):
        diffs[name] = {"difference": round(float((main - o).mean()), 6), "ci": ci(d),
                       "share_ahead": round(float((d > 0).mean()), 4)}
    return {"level": level, "rounds": rounds, "users": n, "main": ci(boot_main), "differences": diffs, "note": note}


def _resampled_means(values: list[np.ndarray], rounds: int, seed: int) -> np.ndarray:
    """Mean of each of ``values`` (per-user arrays of one length n) over ``rounds`` resamples of the users, the same
    resamples for all, shape (len(values), rounds); drawn :data:`BOOTSTRAP_CHUNK` indices at a time."""
    n = len(values[0])
    rng = np.random.default_rng(seed)
    out = np.empty((len(values), rounds), np.float64)
    step = max(1, BOOTSTRAP_CHUNK // n)
    for lo in range(0, rounds, step):
        idx = rng.integers(0, n, size=(min(step, rounds - lo), n))
        for j, v in enumerate(values):
            out[j, lo: lo + len(idx)] = v[idx].mean(axis=1)
    return out


@dataclass(frozen=True)
class _Slice:
    """Users (``mask``) and, for target slices, which of their targets count (None: all of them)."""

    name: str
    mask: np.ndarray
    definition: str
    targets: list[list[str]] | None = None
    n_targets: int | None = None


_OVER = "(metrics over those targets only, users having at least one)"


def _slices(split: Split, cold_user_max_events: int) -> list[_Slice]:
    cold, cold_mask, n_cold = _slice_targets(split)
    new, new_mask, n_new = _history_targets(split, seen_before=False)
    rep, rep_mask, n_rep = _history_targets(split, seen_before=True)
    n_hist = np.array([len(split.histories[u]) for u in split.users], dtype=np.int64)
    return [_Slice("cold_items", cold_mask, "targets nobody had a positive event on before the user's target time "
                   f"{_OVER}", cold, n_cold),
            _Slice("cold_users", n_hist <= cold_user_max_events,
                   f"evaluated users with <= {cold_user_max_events} history events"),
            _Slice("new_to_user", new_mask, f"targets not in the user's own history {_OVER}", new, n_new),
            _Slice("repeats", rep_mask, f"targets already in the user's own history {_OVER}", rep, n_rep)]


def run_evaluation(split: Split, recommenders: Mapping[str, Recommend | Batch], k: int = 20, catalogue_size: int = 0,
                   *, main: str = "ours", cold_user_max_events: int = COLD_USER_MAX_EVENTS,
                   timings: Mapping[str, float] | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate every recommender on ``split`` at ``k``; the JSON object of ``recsys evaluate --json``.

    ``catalogue_size`` is the number of recommendable items (for coverage; 0 = the items seen in the split).
    ``timings`` (e.g. fit seconds) are merged into ``timings_s``; ``extra`` keys are added to the top level.
    """
    t_start = time.perf_counter()
    users = split.users
    targets = [split.targets[u] for u in users]
    if not catalogue_size:
        catalogue_size = len(split.train_items | {t for ts in targets for t in ts})
    slices = _slices(split, cold_user_max_events)
    results: dict[str, dict[str, float | None]] = {}
    per_slice: dict[str, dict[str, dict[str, float | None]]] = {sl.name: {} for sl in slices}
    recall_of: dict[str, np.ndarray] = {}
    timings_s: dict[str, float] = {}
    for name, rec in recommenders.items():
        t0 = time.perf_counter()
        lists = recommend_all(split, rec, k) if users else []
        timings_s[name] = round(time.perf_counter() - t0, 3)
        pu = per_user(lists, targets, k) if users else _empty()
        results[name] = {**pu.mean(), "coverage": coverage(lists, k, catalogue_size)}
        for sl in slices:
            of = pu if sl.targets is None or not users else per_user(lists, sl.targets, k)
            per_slice[sl.name][name] = of.mean(sl.mask)
        recall_of[name] = pu.recall
        log.info("evaluated %s on %d users in %.1fs: recall@%d=%s", name, len(users), timings_s[name], k,
                 results[name]["recall"])

    def slice_obj(sl: _Slice) -> dict[str, Any]:
        per = per_slice[sl.name]
        more = {} if sl.n_targets is None else {"targets": sl.n_targets}
        obj: dict[str, Any] = {"users": int(sl.mask.sum()), **more, "definition": sl.definition}
        obj.update(per.get(main, dict.fromkeys(METRICS)))
        obj["baselines"] = {b: per[b] for b in BASELINES if b in per}
        obj["peers"] = {n: m for n, m in per.items() if n != main and n not in BASELINES}
        return obj

    if timings:
        timings_s.update({key: round(float(v), 3) for key, v in timings.items()})
    timings_s["evaluate_total"] = round(time.perf_counter() - t_start, 3)
    if main not in results:
        log.warning("no %r recommender given: 'metrics' is null", main)
    out: dict[str, Any] = {
        "k": k,
        "protocol": split.protocol,
        "users": len(users),
        "targets": int(sum(len(t) for t in targets)),
        "catalogue_size": catalogue_size,
        "metrics": results.get(main),
        "baselines": {b: results[b] for b in BASELINES if b in results},
        "peers": {n: m for n, m in results.items() if n != main and n not in BASELINES},
        "slices": {sl.name: slice_obj(sl) for sl in slices},
        "intervals": {"metric": "recall",
                      **paired_intervals(recall_of[main], {n: r for n, r in recall_of.items() if n != main})}
        if main in recall_of else None,
        "timings_s": timings_s,
    }
    if (said := k_note(k, catalogue_size)) is not None:
        out["caution"] = said
    if extra:
        out.update(extra)
    return out


def k_note(k: int, catalogue_size: int) -> str | None:
    """What to say when lists of ``k`` hold half the catalogue or more: recall is then high by construction (1 when
    k covers it all), and a baseline's gap to ours is an artefact of which items it can list; None otherwise."""
    if not catalogue_size or 2 * k < catalogue_size:
        return None
    return (f"k={k} lists {min(k, catalogue_size)} of the {catalogue_size} items: a list that long holds most "
            f"targets by construction, so recall@{k} and the differences say little; rerun with --k "
            f"{max(1, catalogue_size // 10)} (a tenth of the catalogue) or on a larger catalogue")


def _empty() -> PerUser:
    z = np.zeros(0)
    return PerUser(z, z, z, z)


SLICE_LABELS = {"cold_items": "cold items", "cold_users": "cold users", "new_to_user": "new to user",
                "repeats": "repeats"}


def markdown_table(result: Mapping[str, Any], main: str = "ours", title: str | None = None) -> str:
    """The result as a markdown table: one row per recommender, metrics at K plus each slice's recall."""
    k = result["k"]
    rows: list[tuple[str, Mapping[str, Any] | None]] = [(main, result.get("metrics"))]
    rows += list(result.get("baselines", {}).items()) + list(result.get("peers", {}).items())
    slices = [(label, result["slices"][name]) for name, label in SLICE_LABELS.items() if name in result["slices"]]

    def slice_recall(sl: Mapping[str, Any], name: str) -> Any:
        if name == main:
            return sl.get("recall")
        return (sl.get("baselines", {}).get(name) or sl.get("peers", {}).get(name) or {}).get("recall")

    def fmt(v: Any) -> str:
        return "–" if v is None else f"{v:.4f}"

    head = (f"| model | recall@{k} | NDCG@{k} | hit@{k} | MRR@{k} | coverage@{k} | "
            + "".join(f"recall@{k} {label} ({sl['users']} users) | " for label, sl in slices)).rstrip()
    lines = [f"**{title}** — protocol {result['protocol']}, {result['users']} users\n" if title else "",
             head, "|" + "---|" * (6 + len(slices))]
    for name, m in rows:
        if m is None:
            continue
        cells = [m["recall"], m["ndcg"], m["hit_rate"], m["mrr"], m["coverage"]]
        cells += [slice_recall(sl, name) for _, sl in slices]
        lines.append(f"| {name} | " + " | ".join(fmt(v) for v in cells) + " |")
    return "\n".join(line for line in lines if line) + "\n"


def best_other(result: Mapping[str, Any], metric: str = "recall") -> tuple[str, float]:
    """The strongest baseline or peer on ``metric``: (name, value)."""
    pool: dict[str, Any] = {**result.get("baselines", {}), **result.get("peers", {})}
    best = max(((n, m.get(metric) or 0.0) for n, m in pool.items()), key=lambda x: x[1], default=("none", 0.0))
    return best[0], float(best[1])
