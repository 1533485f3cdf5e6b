"""Rules after ranking: filters, hard exclusions, dislikes, business boosts and MMR diversity.

Filters and exclusions act on the candidate set before scoring (the search sources over-fetch so a filtered request
still fills k); dislikes, boosts and diversity act on the scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from recsys.ranking.candidates import SOURCES, SRC, Candidates
from recsys.ranking.catalog import ItemTable
from recsys.ranking.history import History

DISLIKE_FLOOR = 0.5
"""Cosine similarity to a disliked item above which a candidate is demoted (fully at 1.0)."""


def allowed_mask(table: ItemTable, filter_fn: Callable[[str], bool] | None,
                 allowed: np.ndarray | Sequence[str] | None) -> np.ndarray | None:
    """bool per row of items that may be returned, or None when every available item may."""
    mask: np.ndarray | None = None if table.available.all() else table.available.copy()
    if allowed is not None:
        a = np.asarray(allowed)
        if a.dtype == bool and a.shape == (table.n,):
            m = a.copy()
        else:
            m = np.zeros(table.n, bool)
            rows = table.rows_of(a.tolist())
            m[rows[rows >= 0]] = True
        mask = m if mask is None else mask & m
    if filter_fn is not None:
        m = np.fromiter((bool(filter_fn(i)) for i in table.ids), dtype=bool, count=table.n)
        mask = m if mask is None else mask & m
    return mask


def hard_excluded(table: ItemTable, exclude: set[str], history: History) -> set[str]:
    """Ids that must never be returned: the request's exclusions and every item the user disliked."""
    return set(exclude) | {table.ids[r] for r in history.disliked}


def demote_disliked(table: ItemTable, rows: np.ndarray, scores: np.ndarray, disliked: np.ndarray) -> np.ndarray:
    """Push down candidates close to a disliked item: by up to the whole score range for a near duplicate, and by
    all of it for another variant of a disliked product (H&M's colours of one product are only ~0.55 alike)."""
    if not len(disliked) or not len(rows):
        return scores
    sim = (table.fused[rows] @ table.fused[disliked].T).max(axis=1)
    strength = np.clip((sim - DISLIKE_FLOOR) / (1 - DISLIKE_FLOOR), 0, 1)
    groups = table.group[disliked]
    strength[np.isin(table.group[rows], groups[groups >= 0])] = 1.0
    span = float(scores.max() - scores.min()) + 1.0
    return scores - strength * span


def fold_category(name: str | None) -> str | None:
    """A category as rules compare it, as filters do: trimmed and case-folded (``category:Shoes`` boosts "shoes")."""
    return None if name is None else name.strip().casefold()


def apply_boosts(table: ItemTable, rows: np.ndarray, scores: np.ndarray,
                 boosts: Mapping[str, float] | None) -> np.ndarray:
    """Business boosts, in units of the request's score spread: {item_id: b} or {"category:NAME": b}."""
    if not boosts or not len(rows):
        return scores
    spread = float(scores.std()) or 1.0
    add = np.zeros(len(rows))
    for i, r in enumerate(rows):
        add[i] += boosts.get(table.ids[r], 0.0)
    cats: dict[str | None, float] = {}
    for key, v in boosts.items():
        if key.startswith("category:"):  # two spellings of one category add up, as two boosts of one item would
            name = fold_category(key.split(":", 1)[1])
            cats[name] = cats.get(name, 0.0) + v
    if cats and table.category_names is not None:
        names = [fold_category(n) for n in table.category_names]
        for i, r in enumerate(rows):
            c = table.category[r]
            if c >= 0:
                add[i] += cats.get(names[c], 0.0)
    return scores + add * spread


def mmr(vectors: np.ndarray, rows: np.ndarray, scores: np.ndarray, k: int, diversity: float) -> list[int]:
    """Indices into rows of the top k by maximal marginal relevance.

    ``diversity`` 0 keeps the score order; up to 1 trades relevance (scores min-max scaled over an over-fetched pool
    of 4k) for dissimilarity to the items already chosen.
    """
    order = np.argsort(-scores, kind="stable")
    if diversity <= 0 or len(rows) <= 1:
        return order[:k].tolist()
    pool = order[: max(4 * k, 50)]
    rel = scores[pool]
    rel = (rel - rel.min()) / (rel.max() - rel.min() + 1e-12)
    v = vectors[rows[pool]]
    sims = v @ v.T
    chosen: list[int] = []
    best_sim = np.full(len(pool), -np.inf)
    free = np.ones(len(pool), bool)
    for _ in range(min(k, len(pool))):
        red = np.where(np.isfinite(best_sim), best_sim, 0.0)
        val = (1 - diversity) * rel - diversity * red
        val[~free] = -np.inf
        j = int(np.argmax(val))
        chosen.append(j)
        free[j] = False
        best_sim = np.maximum(best_sim, sims[j])
    return [int(pool[j]) for j in chosen]


def reserve_new(order: list[int], scores: np.ndarray, is_new: np.ndarray, k: int, slots: int) -> list[int]:
    """Make sure up to ``slots`` eligible new items (``is_new``, by index) are in the top k, replacing the tail."""
    if slots <= 0 or not is_new.any():
        return order[:k]
    top = order[:k]
    have = sum(bool(is_new[i]) for i in top)
    want = [int(i) for i in np.argsort(-scores, kind="stable") if is_new[i] and int(i) not in top]
    add = want[: max(0, slots - have)]
    if not add:
        return top
    keep = [i for i in top if is_new[i]]
    rest = [i for i in top if not is_new[i]][: k - len(keep) - len(add)]
    kept = set(rest) | set(keep)
    return [i for i in top if i in kept] + add


def top_up(cands: Candidates, table: ItemTable, pop: np.ndarray, allowed: np.ndarray | None,
           exclude: set[str], history: History, want: int, recent: int) -> Candidates:
    """A thin (heavily filtered) candidate set topped up to ``want`` from every allowed item: by taste (the mean of
    the ``recent`` latest items), else by popularity ``pop``."""
    ok = table.available.copy() if allowed is None else allowed.copy()
    ok[cands.rows] = False
    ex = table.rows_of(list(exclude))
    ok[ex[ex >= 0]] = False
    ok[history.disliked] = False
    free = np.flatnonzero(ok)
    if not len(free):
        return cands
    liked = history.rows[history.seeds]  # taste without what the shopper disliked
    if len(liked):
        prof = table.fused[liked[-recent:]].mean(0)
        order = free[np.argsort(-(table.fused[free] @ prof), kind="stable")]
        source = "interest"
    else:
        order = free[np.argsort(-pop[free], kind="stable")]
        source = "popular"
    add = order[: want - len(cands)]
    flags = np.zeros((len(add), len(SOURCES)), np.float32)
    flags[:, SRC[source]] = 1.0
    ranks = np.full((len(add), len(SOURCES)), 1000.0, np.float32)
    # after the source's own candidates: a filler ranked 0, 1, 2... looked to the network like the best sellers
    # (never-sold items above the real ones, and the head of a list changed with k)
    own = cands.ranks[cands.flags[:, SRC[source]] > 0, SRC[source]]
    ranks[:, SRC[source]] = (own.max() + 1.0 if len(own) else 0.0) + np.arange(len(add))
    return Candidates(np.r_[cands.rows, add], np.r_[cands.flags, flags], np.r_[cands.ranks, ranks], len(cands))


def fillers_last(cands: Candidates, s: np.ndarray) -> np.ndarray:
    """Scores with the top-up rows moved below every real candidate, in the network's order among themselves: a
    network fitted on a few shoppers ranked never-sold fillers above the best sellers, so the head of a list
    changed with k (it is topped up only when k outgrows the candidates)."""
    f = cands.filler_from
    if f is None or f == 0 or f >= len(s):
        return s
    real, fill = s[:f][np.isfinite(s[:f])], s[f:][np.isfinite(s[f:])]
    if not len(real) or not len(fill) or (gap := fill.max() - real.min()) < 0:
        return s  # in order already (a non-finite score is dropped later, with its own message)
    out = s.copy()
    out[f:] -= gap + 1e-3
    return out
