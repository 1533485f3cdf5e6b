"""RankingPipeline: fit on events, recommend for one history, save and load as a versioned artifact.

    pipe = RankingPipeline.fit(events, items, vectors, settings)
    recs = pipe.recommend(user_events, k=20, exclude={"a1"}, diversity=0.3, explain=True)
    pipe.save(dir); pipe = RankingPipeline.load(dir, vectors=vectors, items=items, expect_encoder_id=...)

The pipeline holds no store handle: inputs are frames and vectors, so the service, the evaluator and notebooks
feed it the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys import tracing
from recsys.errors import IncompatibleArtifact, RankerError
from recsys.ranking import rules
from recsys.ranking.artifact import load_pipeline, save_pipeline
from recsys.ranking.candidates import CandidateGenerator, Candidates, ExactSearch, VectorSearch
from recsys.ranking.catalog import ItemTable, VectorsLike
from recsys.ranking.cobuy import CobuyProjection, fold_of, out_of_fold
from recsys.ranking.context import make_context
from recsys.ranking.explain import explain_item, recent_rows
from recsys.ranking.forward import NumpyRanker, unit_rows
from recsys.ranking.history import TYPE_CODE, History, day_of, histories_by_user, history_from_frame
from recsys.ranking.lists import ListPolicy, compose
from recsys.ranking.model import RankerNet
from recsys.ranking.params import RankingParams
from recsys.ranking.result import Recommendation
from recsys.ranking.stats import ItemStats
from recsys.ranking.train import Example, Progress, build_examples, fit_net, make_example, no_network, score

log = logging.getLogger(__name__)

ItemFilter = Callable[[str], bool]


@dataclass
class _Request:
    history: History
    now: float
    k: int
    exclude: set[str]
    allowed: np.ndarray | None
    diversity: float
    explain: bool
    boosts: dict[str, float] | None
    policy: ListPolicy
    shown: int | None = None
    removed: AbstractSet[str] = frozenset()  # never named by an explanation (hidden, deleted, excluded)


class RankingPipeline:
    """Candidates -> learned ranker -> rules -> diversity -> explanations, over one catalogue of item vectors."""

    def __init__(self, params: RankingParams, stats: ItemStats, net: RankerNet | None, encoder_id: str, dim: int,
                 manifest: dict[str, Any]) -> None:
        self.params = params
        self.stats = stats
        self.net = net
        self._forward = NumpyRanker.of(net) if net is not None else None
        """The network's forward in numpy (None: deep pathway, torch only): per request, faster than torch."""
        self.encoder_id = encoder_id
        self.dim = dim
        self.manifest = manifest
        self.repurchase = bool(manifest.get("repurchase", params.repurchase))
        self._fit_ids = set(stats.ids)
        self._table: ItemTable | None = None
        self._search: VectorSearch | None = None
        self._custom_search = False
        self.default_diversity = 0.0
        """MMR weight used when a request gives none (settings.ranking.diversity)."""
        self.exclude_seen = False
        """Never return items already in the history (settings.ranking.exclude_seen)."""
        self.exclude_purchased = False
        """Never return items the user already bought (settings.ranking.exclude_purchased)."""
        self.policy = ListPolicy()
        """The shopper-list caps of a request that names none (settings.ranking.max_repeat_share, max_per_group)."""
        self.cobuy: CobuyProjection | None = None
        """The co-purchase space's projection (None: not fitted); applied to every catalogue the ranker serves."""
        self._local = threading.local()

    # -- construction ---------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, events: pd.DataFrame, items: pd.DataFrame | None, vectors: VectorsLike, settings: Any = None,
            *, params: RankingParams | None = None, search: VectorSearch | None = None,
            progress: Progress | None = None, cobuy_before: datetime | None = None) -> RankingPipeline:
        """Fit statistics and the ranker on ``events`` (columns user_id, item_id, type, value, ts).

        ``cobuy_before``: the served co-purchase space sees only events before this time. An evaluation passes its
        earliest target time: the space is one fitted matrix, not a statistic counted as of each request's "now",
        and other shoppers' purchases after a target would otherwise place never-sold items beside the history."""
        p = params or RankingParams.from_settings(settings)
        t0 = time.time()
        table = ItemTable.build(vectors, items, p.variant_attribute, names=p.hybrid_k > 0)
        hist = histories_by_user(events, table)
        stats = ItemStats.fit(table.ids, hist, p.cooc_window)
        repurchase = p.repurchase and _repeat_rate(hist) >= 0.01
        known = np.ones(table.n, bool)
        cobuy, folds = out_of_fold(table, hist, before=cobuy_before, **_cobuy_args(p)) if p.cobuy else (None, {})
        vs = search or ExactSearch(table.ids, table.fused)
        examples: list[Example] = []
        # each half of the users trains with the co-purchase space fitted on the other half (never on its targets)
        for f, part in _folds(hist, cobuy is not None).items():
            t_f = dataclasses.replace(table, behaviour=folds.get(f))
            gen = CandidateGenerator(t_f, stats, vs, p, known)
            examples += build_examples(part, t_f, stats, gen, known, p, repurchase, progress)
        net: RankerNet | None = None
        metrics: dict[str, float] = {}
        if examples:
            net, metrics = fit_net(examples, _attention_vectors(table, p), p, progress)
        manifest = {
            "kind": "ranker", "version": time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
            "encoder_id": table.encoder_id, "dim": table.dim, "features": list(_features()),
            "attr_keys": table.attr_keys,
            "seed": p.seed, "params": p.to_dict(), "repurchase": repurchase, "metrics": metrics,
            "events": len(events), "items": table.n, "users": len(hist), "fit_seconds": round(time.time() - t0, 2),
            **({} if examples else no_network(hist, p, len(events))),  # said in the manifest, not only in a log
        }
        pipe = cls(p, stats, net, table.encoder_id, table.dim, manifest)
        pipe.cobuy = cobuy
        pipe.configure(settings)
        pipe._install(table, search)
        return pipe

    def configure(self, settings: Any) -> None:
        """Take the request defaults (diversity, exclusions) from ``settings.ranking`` when given."""
        r = getattr(settings, "ranking", None)
        if r is not None:
            self.default_diversity = float(getattr(r, "diversity", 0.0))
            self.exclude_seen = bool(getattr(r, "exclude_seen", False))
            self.exclude_purchased = bool(getattr(r, "exclude_purchased", False))
            self.policy = ListPolicy(float(getattr(r, "max_repeat_share", 1.0)), int(getattr(r, "max_per_group", 0)))

    def update_items(self, vectors: VectorsLike, items: pd.DataFrame | None = None,
                     search: VectorSearch | None = None) -> None:
        """Swap in a new catalogue (new, changed or removed items); no retraining: new items rank by content."""
        table = ItemTable.build(vectors, items, self.params.variant_attribute, list(self.manifest.get("attr_keys", [])),
                                names=self.params.hybrid_k > 0)
        if table.encoder_id != self.encoder_id:
            raise IncompatibleArtifact(f"item vectors come from encoder {table.encoder_id!r}, the ranker was trained "
                                       f"on {self.encoder_id!r}; retrain the ranker (recsys train)")
        if table.dim != self.dim:
            raise IncompatibleArtifact(f"item vectors have dimension {table.dim}, the ranker was trained on "
                                       f"{self.dim}; retrain the ranker (recsys train)")
        self._install(table, search)

    def with_events(self, events: pd.DataFrame, *, pairs: bool = False) -> RankingPipeline:
        """A copy whose statistics (popularity, distinct users, trends, first sale, prices) count ``events`` (all
        stored ones, not only the training's): the same model, ranking with what shoppers did since it was trained.
        Co-occurrence keeps the training's pairs unless ``pairs`` (each shopper's own are added per request)."""
        table = self.table
        pipe = copy.copy(self)
        stats = ItemStats.fit(table.ids, histories_by_user(events, table), self.params.cooc_window)
        pipe.stats = stats if pairs else stats.with_pairs_of(self.stats)
        pipe._gen = self._gen.with_stats(pipe.stats)
        return pipe

    def _install(self, table: ItemTable, search: VectorSearch | None) -> None:
        self.stats = self.stats.aligned(table.ids)
        self._known = np.array([i in self._fit_ids for i in table.ids], dtype=bool)
        if search is not None:
            self._search, self._custom_search = search, True
        elif not self._custom_search:
            self._search = ExactSearch(table.ids, table.fused)
        table.behaviour = self.cobuy.transform(table) if self.cobuy is not None else None
        self._table = table
        assert self._search is not None
        self._gen = CandidateGenerator(table, self.stats, self._search, self.params, self._known)
        vec = _attention_vectors(table, self.params)
        self._vec = torch.from_numpy(vec)
        self._vec_unit = unit_rows(vec)

    def warm_lists(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Compute every item's kept neighbour lists now instead of on first sight (the server does it in the
        background after loading a generation); the number of lists computed."""
        return self._gen.warm(stop)

    def __getstate__(self) -> dict[str, Any]:  # copies get their own per-thread timings (a thread-local can't copy)
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def last_timings(self) -> dict[str, float]:
        """Milliseconds per stage of this thread's last call (candidates_ms, score_ms, rules_ms): per thread, so
        serving threads never read each other's."""
        return dict(getattr(self._local, "timings", {}))

    @property
    def table(self) -> ItemTable:
        if self._table is None:
            raise RankerError("the ranker has no item vectors yet; call update_items(vectors) after load")
        return self._table

    @property
    def ranker_id(self) -> str:
        return f"ranker-{self.manifest.get('version', 'unsaved')}"

    # -- recommendation -------------------------------------------------------------------------------------
    def recommend(self, history: pd.DataFrame | History | None, k: int = 20, *, filter_fn: ItemFilter | None = None,
                  allowed: np.ndarray | Sequence[str] | None = None, exclude: AbstractSet[str] | None = None,
                  diversity: float | None = None, explain: bool = False, now: datetime | float | None = None,
                  boosts: dict[str, float] | None = None, exclude_seen: bool | None = None,
                  policy: ListPolicy | None = None, shown: int | None = None) -> list[Recommendation]:
        """Top-k items for one user's events (a frame with columns item_id, type, value, ts, or a History).

        ``filter_fn(item_id) -> bool`` or ``allowed`` (item ids) restrict the result; ``exclude`` removes ids;
        ``diversity`` in [0, 1] is the MMR weight (None: the configured default); ``boosts`` adds b times
        the score spread to a score (``{item_id: b}`` or ``{"category:NAME": b}``); ``exclude_seen``
        drops items already in the history (None: the configured default); ``now`` (the request time) defaults to
        the last event of the history, else the end of the training data; ``policy`` caps repeats and variants
        (None: the configured default; ``ListPolicy()`` none, as for a "buy again" list); ``shown``: the length of
        the list shown when more than it is fetched for later rules to thin (the repeat cap is a share of it).
        """
        return self.recommend_many([history], k, filter_fn=filter_fn, allowed=allowed, exclude=exclude,
                                   diversity=diversity, explain=explain, now=[now], boosts=boosts,
                                   exclude_seen=exclude_seen, policy=policy, shown=shown)[0]

    def recommend_many(self, histories: Sequence[pd.DataFrame | History | None], k: int = 20, *,
                       filter_fn: ItemFilter | None = None, allowed: np.ndarray | Sequence[str] | None = None,
                       exclude: AbstractSet[str] | None = None, diversity: float | None = None, explain: bool = False,
                       now: Sequence[datetime | float | None] | None = None, boosts: dict[str, float] | None = None,
                       exclude_seen: bool | None = None, policy: ListPolicy | None = None,
                       shown: int | None = None, batch_size: int = 64) -> list[list[Recommendation]]:
        """:meth:`recommend` for many histories at once (scored in batches; used by the evaluator)."""
        table = self.table
        mask = rules.allowed_mask(table, filter_fn, allowed)
        div = self.default_diversity if diversity is None else float(diversity)
        seen = self.exclude_seen if exclude_seen is None else exclude_seen
        pol = self.policy if policy is None else policy
        nows = list(now) if now is not None else [None] * len(histories)
        reqs = []
        for h_df, n in zip(histories, nows, strict=True):
            if isinstance(h_df, History):
                h = h_df
            else:
                h = history_from_frame(h_df, table) if h_df is not None else History.empty()
            h = h.latest(self.params.max_events)
            t = day_of(n)
            if t is None:
                t = h.last_ts if h.last_ts is not None else self.stats.end_ts
            ex = set(exclude or ())
            if seen or not self.repurchase:
                ex |= {table.ids[r] for r in h.rows}
            elif self.exclude_purchased:
                ex |= {table.ids[r] for r in h.rows[h.types == TYPE_CODE["purchase"]]}
            if pol.active:  # a liked item is known to the user: never a new pick (it stays in "buy again")
                ex |= {table.ids[r] for r in h.rows[h.types == TYPE_CODE["like"]]}
            reqs.append(_Request(h, t, k, ex, mask, div, explain, boosts, pol, shown, frozenset(exclude or ())))
        out: list[list[Recommendation]] = []
        for i in range(0, len(reqs), batch_size):
            out.extend(self._run(reqs[i: i + batch_size]))
        return out

    def _run(self, reqs: list[_Request]) -> list[list[Recommendation]]:
        t0 = time.perf_counter()
        prepared = [self._prepare(r) for r in reqs]
        t1 = time.perf_counter()
        scores = self.scores([e for _, e in prepared], [c for c, _ in prepared])
        t2 = time.perf_counter()
        results = [self._finish(r, c, rules.fillers_last(c, np.asarray(s, dtype=np.float64)))
                   for r, (c, _), s in zip(reqs, prepared, scores, strict=True)]
        t3 = time.perf_counter()
        self._local.timings = {"candidates_ms": (t1 - t0) * 1000, "score_ms": (t2 - t1) * 1000,
                               "rules_ms": (t3 - t2) * 1000}
        if tracing.active():
            tracing.record_phases((("recsys.candidates", t0, t1), ("recsys.ranking", t1, t2), ("recsys.rules", t2, t3)),
                                  {"recsys.requests": len(reqs), "recsys.ranker": self.ranker_id})
        return results

    def _prepare(self, r: _Request) -> tuple[Candidates, Example]:
        """One request's candidates and the network's inputs for them."""
        table, p = self.table, self.params
        ctx = make_context(r.history, r.now, self.stats, p)
        # over-fetch the search sources when a filter or exclusions will thin them out
        extra = 0 if r.allowed is None and not r.exclude else 2 * r.k
        cands = self._gen.generate(ctx, rules.hard_excluded(table, r.exclude, r.history), extra, r.allowed)
        if len(cands) < r.k:
            cands = rules.top_up(cands, table, ctx.pop, r.allowed, r.exclude, r.history, 2 * r.k, p.recent)
        return cands, make_example(ctx, cands, table, self._known, p)

    def scores(self, examples: list[Example], cands: list[Candidates], runtime: str = "auto") -> list[np.ndarray]:
        """The network's scores per request: ``auto`` takes the numpy forward one request at a time when the
        network has one, else ``torch`` (one padded batch); without a network, the candidates' best source rank."""
        if self.net is None:
            return [-np.min(c.ranks, axis=1) for c in cands]
        if runtime == "numpy" or (runtime == "auto" and self._forward is not None):
            assert self._forward is not None
            v, fwd = self._vec_unit, self._forward
            return [fwd(v[e.hist_rows], e.hist_types, e.hist_age, v[e.cand_rows], e.feats, unit=True)
                    for e in examples]
        return score(self.net, examples, self._vec)

    def _finite(self, order: list[int], s: np.ndarray) -> list[int]:
        """``order`` without the candidates scored NaN or infinite: a damaged ranker or vector file must not serve
        them (JSON has no NaN); all of them non-finite is an error that says what to check."""
        ok = np.isfinite(s)
        if ok.all() or not len(s):
            return order
        if not ok.any():
            raise RankerError(f"ranker {self.ranker_id} scored every candidate NaN or infinite: its weights or the "
                              "index's vectors are damaged; check with `recsys index verify`, then `recsys build` "
                              "(or `recsys index build --full` and `recsys train`)")
        log.error("ranker %s scored %d of %d candidates NaN or infinite (damaged vectors?); they are left out",
                  self.ranker_id, int((~ok).sum()), len(s))
        return [i for i in order if ok[i]]

    def _finish(self, r: _Request, cands: Candidates, s: np.ndarray) -> list[Recommendation]:
        table = self.table
        s = rules.demote_disliked(table, cands.rows, s, r.history.disliked)
        s = rules.apply_boosts(table, cands.rows, s, r.boosts)
        if r.policy.active:  # ranked deeper, so the caps can skip and still fill k
            order = rules.mmr(table.fused, cands.rows, s, r.k, r.diversity) if r.diversity > 0 else []
            head = set(order)
            order += [i for i in np.argsort(-s, kind="stable").tolist() if i not in head]
            repeat = np.isin(cands.rows, r.history.rows)  # per candidate: no catalogue-sized array per request
            order = compose(order, r.k, repeat, table.group[cands.rows], r.policy, r.shown)
        else:
            order = rules.mmr(table.fused, cands.rows, s, r.k, r.diversity)
        liked = r.history.rows[r.history.seeds]  # a new item near a disliked one gets no reserved place
        if len(liked) and not self._known.all():
            sim = (table.fused[cands.rows] @ table.fused[liked[-self.params.recent:]].T).max(axis=1)
            is_new = ~self._known[cands.rows] & (sim >= self.params.new_min_sim)
            order = rules.reserve_new(order, s, is_new, r.k, self.params.new_slots)
        order = self._finite(order, s)
        recs = []
        recent = recent_rows(r.history) if r.explain and len(r.history) else None
        for i, sources in zip(order, cands.sources_at(order, r.history.bought), strict=True):
            row = int(cands.rows[i])
            rec = Recommendation(table.ids[row], float(s[i]), sources)
            if r.explain:
                rec.explanation = explain_item(table, r.history, row, float(s[i]), rec.sources, self.ranker_id,
                                               recent=recent, removed=r.removed)
            recs.append(rec)
        return recs

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, path: Path | str) -> Path:
        return save_pipeline(self, Path(path))

    @classmethod
    def load(cls, path: Path | str, *, vectors: VectorsLike | None = None, items: pd.DataFrame | None = None,
             expect_encoder_id: str | None = None, search: VectorSearch | None = None,
             settings: Any = None) -> RankingPipeline:
        """Load a saved pipeline; refused (IncompatibleArtifact) when made for another encoder or feature list."""
        pipe = load_pipeline(cls, Path(path), expect_encoder_id)
        pipe.configure(settings)
        if vectors is not None:
            pipe.update_items(vectors, items, search)
        return pipe


def _attention_vectors(table: ItemTable, p: RankingParams) -> np.ndarray:
    """The vectors the network's content pathway attends over: the light pathway only compares items with each
    other, so it may use the item-to-item space (``attention_space="content"``); the deep one projects the fused
    vectors, whose dimension the artifact records."""
    if p.content_pathway == "light" and p.attention_space == "content":
        return np.ascontiguousarray(table.content, dtype=np.float32)
    return table.fused


def _cobuy_args(p: RankingParams) -> dict[str, float | int]:
    return {"dim": p.cobuy_dim, "window_days": p.cobuy_window_days, "epochs": p.cobuy_epochs, "seed": p.seed}


def _folds(hist: dict[str, History], split: bool) -> dict[int, dict[str, History]]:
    if not split:
        return {-1: hist}
    return {f: {u: h for u, h in hist.items() if fold_of(u) == f} for f in (0, 1)}


def _features() -> tuple[str, ...]:
    from recsys.ranking.features import FEATURES

    return FEATURES


def _repeat_rate(hist: dict[str, History]) -> float:
    rep = tot = 0
    for h in hist.values():
        tot += len(h)
        rep += len(h) - len(np.unique(h.rows))
    return rep / tot if tot else 0.0
