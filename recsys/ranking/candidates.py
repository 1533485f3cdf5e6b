"""Candidate generation: several sources, each candidate tagged with every source that produced it.

Sources: ``interest`` (nearest items to up to a few interest vectors clustered from the recent history), ``content``
(neighbours of the latest items), ``cooc`` (co-occurrence neighbours), ``repurchase`` (the user's own past items;
named ``seen`` in a result when the user never bought the item: :data:`SEEN`),
``variant`` (other variants of past items, e.g. the same product in another colour), ``trending`` (popular in a recent
window), ``popular`` (up to now), ``similar`` (the items whose descriptions are most alike any of the latest few, in
:attr:`ItemTable.content`, the user's own items included: "the same again, or one like it"), ``new`` (items that arrived
after training, nearest to the user's taste), ``cobuy`` (nearest to the latest items in the co-purchase space of
:mod:`recsys.ranking.cobuy`: what shoppers buy with or instead of them, unsold items included), ``hybrid`` (the
latest items' neighbours by name words and by description, fused by reciprocal rank as text search fuses keyword and
vector matches: :mod:`recsys.ranking.lexical`; a collection or print name reaches what the vectors blur).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recsys.ranking.catalog import ItemTable
from recsys.ranking.context import Context
from recsys.ranking.lexical import fuse_ranked
from recsys.ranking.neighbours import Neighbours, top_k
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats

SOURCES: tuple[str, ...] = ("interest", "content", "cooc", "repurchase", "variant", "trending", "popular", "new",
                            "similar", "cobuy", "hybrid")
SIMILAR_EXACT_MAX = 200_000
"""Catalogues up to this size get the ``similar`` source by one exact product over the content vectors."""
SRC = {s: i for i, s in enumerate(SOURCES)}
CONTENT_KEPT_MAX = 50_000
"""Catalogues below this size (the default exact-index threshold) take the ``content`` source from kept lists."""


class VectorSearch(Protocol):
    """Nearest-neighbour search over item vectors by inner product (the FAISS index reader satisfies it)."""

    def search(self, queries: np.ndarray, k: int, exclude: set[str]) -> list[list[tuple[str, float]]]:
        """For each query row of ``queries`` (m, d) float32: up to k (item_id, score), best first, none in exclude."""
        ...


class ExactSearch:
    """Exact inner-product search with numpy, over an id list and a (n, d) matrix."""

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        self.item_ids = [str(i) for i in item_ids]
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self._row = {x: r for r, x in enumerate(self.item_ids)}

    def search(self, queries: np.ndarray, k: int, exclude: set[str]) -> list[list[tuple[str, float]]]:
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        scores = q @ self.vectors.T
        bad = [self._row[x] for x in exclude if x in self._row]
        if bad:
            scores[:, bad] = -np.inf
        return [[(self.item_ids[r], float(s[r])) for r in top_k(s, k)] for s in scores]


@dataclass
class Candidates:
    """Candidate rows with, per source, membership and the rank the source gave (0 best, large when absent)."""

    rows: np.ndarray
    flags: np.ndarray
    """(C, S) float32 0/1."""
    ranks: np.ndarray
    """(C, S) float32."""
    filler_from: int | None = None
    """Where the rows a thin set was topped up with begin (:func:`recsys.ranking.rules.top_up`); None: none."""

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, keep: np.ndarray) -> Candidates:
        """The candidates ``keep`` selects (a bool mask or row positions), in their order."""
        return Candidates(self.rows[keep], self.flags[keep], self.ranks[keep])

    def sources_of(self, i: int, bought: np.ndarray | None = None) -> list[str]:
        seen = bought is not None and not np.isin(self.rows[i], bought)
        return [SEEN if seen and SOURCES[s] == "repurchase" else SOURCES[s] for s in np.flatnonzero(self.flags[i])]

    def sources_at(self, idx: Sequence[int], bought: np.ndarray | None = None) -> list[list[str]]:
        """:meth:`sources_of` for each of ``idx``: one bit code per candidate, names looked up (a list's items at
        once, without a numpy call per item). With ``bought`` (the rows the shopper purchased), a ``repurchase``
        candidate outside them is named :data:`SEEN`."""
        if not len(idx):
            return []
        at = np.asarray(idx, np.int64)
        codes: list[int] = ((self.flags[at] > 0) @ _BITS).tolist()
        seen = [False] * len(at) if bought is None else (~np.isin(self.rows[at], bought)).tolist()
        return [list(_names_of(c, u)) for c, u in zip(codes, seen, strict=True)]


_BITS = 1 << np.arange(len(SOURCES))
SEEN = "seen"
"""A ``repurchase`` candidate's name in a result when the shopper never bought it (only viewed, carted, liked or
rated it). The ranker's source and its features keep the one name ``repurchase``: a result must not say "buy
again" of an item nobody bought."""


@functools.cache
def _names_of(code: int, seen: bool = False) -> tuple[str, ...]:
    return tuple(SEEN if seen and s == "repurchase" else s for j, s in enumerate(SOURCES) if code >> j & 1)


class _Collector:
    """Candidates in the order they first appear; per source the rank of its first mention."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, int]] = []

    def add(self, source: str, rows: Sequence[int] | np.ndarray) -> None:
        if len(rows):
            self.parts.append((np.asarray(rows, dtype=np.int64), SRC[source]))

    def build(self) -> Candidates:
        s_n = len(SOURCES)
        if not self.parts:
            empty = np.zeros((0, s_n), np.float32)
            return Candidates(np.zeros(0, np.int64), empty, empty + 1000.0)
        lens = [len(r) for r, _ in self.parts]
        rows = np.concatenate([r for r, _ in self.parts])
        src = np.repeat(np.array([s for _, s in self.parts], np.int64), lens)
        start = np.repeat(np.cumsum([0, *lens[:-1]]), lens)
        # one stable sort by (row, source): each group's head is that pair's first mention
        key = rows * s_n + src
        o = np.argsort(key, kind="stable")
        ks = key[o]
        head = np.r_[True, ks[1:] != ks[:-1]]
        once, pair = o[head], ks[head]
        row, source = pair // s_n, pair % s_n
        new_row = np.r_[True, row[1:] != row[:-1]]
        seg = np.flatnonzero(new_row)
        # candidates in the order of their first mention by any source
        order = np.argsort(np.minimum.reduceat(once, seg))
        pos_of = np.empty(len(seg), np.int64)
        pos_of[order] = np.arange(len(seg))
        pos = pos_of[np.cumsum(new_row) - 1]
        flags = np.zeros((len(seg), s_n), np.float32)
        ranks = np.full((len(seg), s_n), 1000.0, np.float32)
        flags[pos, source] = 1.0
        ranks[pos, source] = (once - start[once]).astype(np.float32)
        return Candidates(row[seg][order], flags, ranks)


def kmeans(x: np.ndarray, k: int, weights: np.ndarray, iters: int = 8) -> np.ndarray:
    """Up to k L2-normalised centroids of unit rows x (n, d), deterministic (farthest-point init)."""
    k = min(k, len(x))
    centres = [int(np.argmax(weights))]
    for _ in range(1, k):
        d = 1 - (x @ x[centres].T).max(axis=1)
        if d.max() < 0.05:
            break
        centres.append(int(np.argmax(d * weights)))
    c = x[centres].copy()
    members = np.arange(len(c))[None, :]
    last = None
    for _ in range(iters):
        assign = np.argmax(x @ c.T, axis=1)
        if last is not None and np.array_equal(assign, last):
            break  # the same assignment gives the same centres, bit for bit: converged
        last = assign
        w = (assign[:, None] == members) * weights[:, None]  # (n, k): each row's weight in its own cluster
        v = (w.T @ x).astype(c.dtype)
        has = w.any(axis=0)  # an empty cluster keeps its centre
        c[has] = v[has] / np.maximum(np.linalg.norm(v[has], axis=1, keepdims=True), 1e-9)
    return c.astype(np.float32)


class CandidateGenerator:
    """Collects candidates for one user's history at time ``now`` (days)."""

    def __init__(self, table: ItemTable, stats: ItemStats, search: VectorSearch, params: RankingParams,
                 known: np.ndarray) -> None:
        self.table, self.stats, self.search, self.p = table, stats, search, params
        self.known = known
        """bool per row: the item existed when the ranker was trained."""
        self._groups = table.group_members()
        new_rows = np.flatnonzero(~known)
        self._new_rows = new_rows
        self._similar = Neighbours(table.content)
        # below this size the index is exact (a Flat scan, ~5 ms for 5 queries on 17k items): kept lists answer
        self._near = Neighbours(table.fused) if table.n < CONTENT_KEPT_MAX else None
        self._lists: dict[tuple[str, int], tuple[tuple[np.ndarray, ...], np.ndarray]] = {}
        """The popular and trending lists by (source, k), with the statistics' arrays they were made from."""

    def warm(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Every item's kept neighbour lists computed ahead (:meth:`Neighbours.warm`); the lists computed."""
        made = self._similar.warm(stop)
        return made + (self._near.warm(stop) if self._near is not None else 0)

    def with_stats(self, stats: ItemStats) -> CandidateGenerator:
        """The same generator counting other statistics; the kept neighbour lists (the table's alone) are shared,
        so a recount of the statistics does not compute them again."""
        gen = copy.copy(self)
        gen.stats = stats
        gen._lists = {}
        return gen

    def _rows(self, hits: list[tuple[str, float]]) -> np.ndarray:
        index = self.table.index
        return np.array([index[x] for x, _ in hits if x in index], np.int64)

    def _kept(self, row: int, k: int, exclude: set[str]) -> np.ndarray | None:
        """The ``k`` nearest non-excluded items to ``row`` in the fused space from its kept list (itself
        included, as a search gives), or None when lists are not kept here or this one runs out first."""
        if self._near is None or k > self._near.k:
            return None
        rows = self._near.of(row)[0]
        if not exclude:
            return rows[:k]
        ids, out = self.table.ids, []
        for r in rows.tolist():
            if ids[r] not in exclude:
                out.append(r)
                if len(out) == k:
                    break
        if len(out) < k and len(rows) < self.table.n:
            return None
        return np.array(out, np.int64)

    def _memo(self, key: tuple[str, int], of: tuple[np.ndarray, ...]) -> np.ndarray | None:
        """The list kept under ``key`` if it was made from these very arrays (the statistics return the same
        read-only arrays for every request of one window, so serving ranks the catalogue once per window)."""
        hit = self._lists.get(key)
        return hit[1] if hit is not None and all(a is b for a, b in zip(hit[0], of, strict=True)) else None

    def _keep(self, key: tuple[str, int], of: tuple[np.ndarray, ...], rows: np.ndarray) -> np.ndarray:
        rows.flags.writeable = False
        self._lists[key] = (of, rows)
        return rows

    def _popular(self, pop: np.ndarray, k: int) -> np.ndarray:
        top = self._memo(("popular", k), (pop,))
        if top is None:
            top = top_k(pop, k)  # ties by the lower row, as a stable sort
            top = self._keep(("popular", k), (pop,), top[pop[top] > 0])
        return top

    def popular(self, ctx: Context, k: int) -> np.ndarray:
        top = self._popular(ctx.pop if ctx.stats_pop is None else ctx.stats_pop, k)
        if not len(ctx.own_rows):
            return top
        cand = np.union1d(top, ctx.own_rows)  # only the shopper's rows gained: the rest of the top cannot change
        best = cand[np.lexsort((cand, -ctx.pop[cand]))][:k]
        return best[ctx.pop[best] > 0]

    def trending(self, ctx: Context, k: int) -> np.ndarray:
        """The statistics' list, kept per window and shared by every request of it; a shopper's own events the
        statistics miss are added where they are (their rows are the only ones whose counts grew)."""
        counts = self.stats.window_counts(ctx.now, self.p.trending_days)
        pop = ctx.pop if ctx.stats_pop is None else ctx.stats_pop
        top = self._memo(("trending", k), (counts, pop))
        if top is None:
            if counts.sum() < 1:
                top = self._popular(pop, k)
            else:
                top = top_k(counts + 1e-3 * pop, k)
                top = top[counts[top] > 0]
            top = self._keep(("trending", k), (counts, pop), top)
        if not len(ctx.own_rows):
            return top
        mine = ctx.own_rows[ctx.own_ts >= ctx.now - self.p.trending_days]
        if not len(mine) and counts.sum() < 1:
            return self.popular(ctx, k)
        cand = np.union1d(top, ctx.own_rows)
        n = counts[cand] + np.bincount(np.searchsorted(cand, mine), minlength=len(cand))
        order = np.lexsort((cand, -(n + 1e-3 * ctx.pop[cand])))[:k]
        return cand[order][n[order] > 0]

    def similar(self, latest: np.ndarray, k: int, unsold: np.ndarray | None = None, unsold_k: int = 0) -> np.ndarray:
        """Items by max content similarity to the latest distinct items (these included), best first; then the
        ``unsold_k`` most similar of the ``unsold`` ones (bool per row: nobody bought them yet), which the best of
        all rarely reaches: in a sparse shop most purchases are of an article's first sale."""
        c = self.table.content
        if not len(latest) or c.shape[0] > SIMILAR_EXACT_MAX or k + unsold_k <= 0:
            return np.zeros(0, np.int64)
        if unsold is None or unsold_k <= 0:
            kept = self._similar.top_of_max(latest, k)
            if kept is not None:
                return kept
        s = (c[latest] @ c.T).max(axis=0)
        out = top_k(s, k)
        if unsold is not None and unsold_k > 0 and unsold.any():
            su = np.where(unsold, s, -np.inf)
            extra = top_k(su, min(unsold_k, int(unsold.sum())))
            out = np.r_[out, extra[~np.isin(extra, out)]]
        return out

    def variants(self, latest: np.ndarray, k: int) -> list[int]:
        """Up to ``k`` items of the latest items' variant groups (the same product in other colours), the latest
        item's group first; the items themselves included, as their groups list them."""
        out: list[int] = []
        for g in dict.fromkeys(self.table.group[latest].tolist()):
            if g >= 0 and g in self._groups:
                out.extend(self._groups[g].tolist())
            if len(out) >= k:
                break
        return out[:k]

    def cobuy(self, latest: np.ndarray, k: int) -> np.ndarray:
        """Items by max similarity to the latest distinct items in the co-purchase space, these excluded."""
        b = self.table.behaviour
        if b is None or not len(latest) or b.shape[0] > SIMILAR_EXACT_MAX or k <= 0:
            return np.zeros(0, np.int64)
        s = (b[latest] @ b.T).max(axis=0)
        s[latest] = -np.inf
        return top_k(s, k)

    def hybrid(self, latest: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` best of the latest items' lexical and content neighbour lists by reciprocal-rank fusion (the
        name words weighted ``hybrid_lexical_weight``); the latest items themselves included, as in ``similar``."""
        names = self.table.names
        if names is None or not len(latest) or k <= 0:
            return np.zeros(0, np.int64)
        w = self.p.hybrid_lexical_weight
        self._similar.prefetch(latest.tolist())
        lexical = names.nearest(latest.tolist(), self._similar.k)
        lists: list[tuple[np.ndarray, float]] = []
        for r in latest.tolist():
            lists += [(self._similar.of(r)[0], 1.0 - w), (lexical[r], w)]
        return fuse_ranked(lists, k)

    def generate(self, ctx: Context, exclude: set[str] | None = None, extra_k: int = 0,
                 allowed: np.ndarray | None = None) -> Candidates:
        """Candidates for ``ctx``, none of them in ``exclude`` and all ``allowed`` (bool per row) when given.

        Each source over-fetches by ``extra_k`` and keeps its first ``k`` items that survive the filter, so a
        source's list and its ranks (features of the network) are as long as in training, whatever is excluded:
        an exclusion of an item no list reaches must not change the ranking."""
        p, t, h = self.p, self.table, ctx.h
        col = _Collector()
        exclude = exclude or set()
        ok = None
        if exclude or allowed is not None:
            ok = np.ones(t.n, dtype=bool) if allowed is None else np.array(allowed, dtype=bool)
            ex = t.rows_of(list(exclude))
            ok[ex[ex >= 0]] = False

        def fit(rows: np.ndarray | list[int], k: int) -> np.ndarray:
            rows = np.asarray(rows, np.int64)
            return rows[:k] if ok is None else rows[ok[rows]][:k]
        liked = h.rows[h.seeds]  # an item the shopper disliked seeds no source
        if len(liked):
            r_rows, w = ctx.recent_rows, ctx.recent_w
            # distinct items, latest first
            rev = liked[::-1]
            _, first = np.unique(rev, return_index=True)
            latest = rev[np.sort(first)]
            queries: list[np.ndarray] = []
            n_int = 0
            if p.interests > 0:
                cents = kmeans(t.fused[r_rows], p.interests, w)
                queries.extend(cents)
                n_int = len(cents)
            # the latest items' neighbours from kept lists where they serve (exact, and no search), else searched
            if self._near is not None:
                self._near.prefetch(latest[: p.content_last].tolist())
            kept = [self._kept(int(r), p.content_k + extra_k, exclude) for r in latest[: p.content_last]]
            queries.extend(t.fused[[int(r) for r, c in zip(latest, kept, strict=False) if c is None]])
            found = iter(self.search.search(np.stack(queries), max(p.interest_k, p.content_k) + extra_k, exclude)
                         if queries else [])
            for _ in range(n_int):
                col.add("interest", fit(self._rows(next(found)), p.interest_k))
            for c in kept:
                col.add("content", fit(self._rows(next(found)) if c is None else c, p.content_k))
            cs = ctx.cooc
            nz = np.flatnonzero(cs > 0)
            if len(nz):  # ties by the lower row, as a stable sort
                col.add("cooc", fit(nz[top_k(cs[nz], p.cooc_k + extra_k)], p.cooc_k))
            if p.repurchase:
                col.add("repurchase", fit(latest, p.repurchase_k))
            col.add("variant", fit(self.variants(latest, p.variant_k), p.variant_k))
            if p.similar_k or p.similar_unsold_k:
                unsold = ctx.pop <= 0 if p.similar_unsold_k else None
                col.add("similar", fit(self.similar(latest[: p.similar_last], p.similar_k + extra_k, unsold,
                                                    p.similar_unsold_k), p.similar_k + p.similar_unsold_k))
            if p.cobuy_k:
                col.add("cobuy", fit(self.cobuy(latest[: p.cobuy_last], p.cobuy_k + extra_k), p.cobuy_k))
            if p.hybrid_k:
                col.add("hybrid", fit(self.hybrid(latest[: p.hybrid_last], p.hybrid_k + extra_k), p.hybrid_k))
            if p.new_k and len(self._new_rows):
                prof = (t.fused[r_rows] * w[:, None]).sum(0)
                sims = t.fused[self._new_rows] @ prof
                col.add("new", fit(self._new_rows[np.argsort(-sims, kind="stable")[: p.new_k + extra_k]], p.new_k))
        col.add("trending", fit(self.trending(ctx, p.trending_k + extra_k), p.trending_k))
        col.add("popular", fit(self.popular(ctx, p.popular_k + extra_k), p.popular_k))
        cands = col.build()
        if exclude:
            keep = np.array([t.ids[r] not in exclude for r in cands.rows], dtype=bool)
            cands = cands.take(keep)
        return cands
