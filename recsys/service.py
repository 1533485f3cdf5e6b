"""The Recommender: the one object the HTTP API, the CLI and notebooks call (DESIGN.md section 1).

It keeps the read path (search, similar items, recommendations, sessions, trending) and holds handles, not state:
SQL is the source of truth; the index and the ranker are immutable generations loaded lazily and swapped atomically
when newer ones appear (:meth:`Recommender.refresh`, :mod:`recsys.serving.generations`). Writes and the offline jobs
have their own objects over the same store and settings, one attribute away: :attr:`Recommender.catalogue`
(:class:`recsys.catalogue.Catalogue`) and :attr:`Recommender.jobs` (:class:`recsys.jobs.Jobs`)."""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Generator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.catalogue import Catalogue
from recsys.config import Settings, get_settings
from recsys.errors import UnknownItem, ValidationFailed
from recsys.jobs import Jobs
from recsys.lru import LRU
from recsys.serving import library, live_meta
from recsys.serving.generations import Generations, Served
from recsys.serving.query_encoder import QueryEncoder
from recsys.serving.requests import (
    HistoryMarks,
    HistoryRead,
    ListRequest,
    Read,
    RemovedItems,
    arun_reads,
    check,
    check_query,
    clock,
    history_as_of,
    history_limit,
    read_history,
    run_reads,
    session_as_of,
)
from recsys.serving.results import ScoredItem, result_list_bytes, scored_hits
from recsys.serving.rules import NO_RULES, ListRules, with_rules
from recsys.store import Store
from recsys.store.items import deleted_message
from recsys.store.queries import REMOVED_STATE, removed_state_of

if TYPE_CHECKING:
    import pandas as pd

    from recsys.encoders.base import Encoder
    from recsys.index import IndexReader, ItemFilter
    from recsys.ranking import RankingPipeline
    from recsys.ranking.history import History
    from recsys.store.lexical import LexicalIndex

__all__ = ["Recommender", "ScoredItem"]

Timings = dict[str, float]
"""Milliseconds per stage of one request (state, queue, history, filters, rank, details, cache_put; ``cached``: 1.0)."""
Keyed = tuple[tuple[Any, ...], "list[ScoredItem] | None", HistoryRead, AbstractSet[str], float, int | None]  # _keyed


class Recommender:
    """Retrieval and recommendations over one store; :attr:`catalogue` writes, :attr:`jobs` builds, trains, scores."""

    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        self.settings = settings or get_settings()
        self.store = store or Store.open(self.settings)
        self.generations = Generations(self.settings, self.store)
        self._removed = RemovedItems(self.store)
        self._encoders = QueryEncoder(self.settings, self.generations)
        self._marks = HistoryMarks(self.settings.ranking.result_cache_size)  # a user's lists are keyed on theirs
        self._results: LRU[list[ScoredItem]] = LRU(self.settings.ranking.result_cache_size,
                                                    max_bytes=int(self.settings.ranking.result_cache_mb * 2**20),
                                                    weigh=result_list_bytes)
        self._ranking_slots: Any = None  # arecommend's CapacityLimiter, made on first use
        self.catalogue = Catalogue(self.settings, self.store, self.refresh)
        """Event, user and item writes; a delta generation it publishes is served at once (this refresh)."""
        self.jobs = Jobs(self)
        """Build, train and evaluate; what they publish is served at once."""

    # -- artifacts ------------------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The query encoder: the heads the served index was built with (:mod:`recsys.serving.query_encoder`)."""
        return self._encoders.get()

    def use_encoder(self, encoder: Encoder | None) -> None:
        """Answer queries with ``encoder``; None: load the configured one again on the next query (new heads)."""
        self._encoders.use(encoder)

    @property
    def index(self) -> IndexReader:
        return live_meta.on_load(self.store, self.generations.current().reader)  # filters on the store's changes

    @property
    def ranker(self) -> RankingPipeline:
        ranker = self.generations.current().ranker
        if ranker is None:
            raise self.generations.no_ranker()
        return ranker

    def refresh(self, *, strict: bool = False) -> bool:
        """Load a newer index or ranker generation if one appeared; True when one was swapped in (see Generations)."""
        return self.generations.refresh(strict=strict)

    def status(self) -> dict[str, Any]:
        """What is served, what is not (``not_served``) and why (``ranker_error``)."""
        return self.generations.status()

    def clock(self, served: Served | None = None, now: datetime | None = None) -> float:
        """The time a request is ranked at, in days since the epoch (:func:`recsys.serving.requests.clock`)."""
        return clock(self.settings, lambda: served or self.generations.current(), now)

    def removed_items(self) -> frozenset[str]:
        """Ids of the hidden or deleted items (re-read only when the catalogue's removed-items version moved)."""
        return self._removed.ids()

    def get_item(self, item_id: str) -> dict[str, Any]:
        from recsys.store.items import item_details

        with self.store.session() as s:
            return item_details(s, item_id)

    # -- retrieval ------------------------------------------------------------------------------------------
    def _detailed(self, items: list[ScoredItem]) -> list[ScoredItem]:
        """``items`` with what a client shows (one read; a cached list keeps them), unless result_details is off."""
        if not items or not self.settings.api.result_details:
            return items
        from recsys.store.summaries import item_summaries

        found = item_summaries(self.store.read, [it.item_id for it in items])
        return [replace(it, item=found.get(it.item_id)) for it in items]

    def _search(self, query: np.ndarray, k: int, modality: str, filter: ItemFilter | None,
                exclude: Sequence[str], source: str, reader: IndexReader | None = None) -> list[ScoredItem]:
        from recsys.serving.requests import query_vector

        reader = reader or live_meta.follow(self.store, self.index, filter)
        q = query_vector(query, self.encoder.id, reader)
        hits = reader.search(q, k, library.skip(self.removed_items(), exclude), modality=modality, filter=filter)[0]
        return scored_hits(hits, source)

    def search_text(self, query: str, k: int = 20, *, modality: str = "fused", filter: ItemFilter | None = None,
                    exclude: Sequence[str] = (), mode: str | None = None,
                    lexical_weight: float | None = None) -> list[ScoredItem]:
        """Items matching ``query``; ``modality="image"`` searches the image vectors only (text -> image).

        ``mode``: ``hybrid`` fuses keyword and vector results (``lexical_weight``: the keywords' share, 0..1),
        ``vector`` and ``lexical`` use one side (see :mod:`recsys.index.hybrid`). None: hybrid for the fused
        vectors, vector when one tower is asked for by ``modality`` (text -> image stays text -> image)."""
        from recsys.index.hybrid import check_mode, default_mode, hybrid_search

        check(k, modality)
        mode = mode or default_mode(modality)
        check_mode(mode, lexical_weight)
        query = check_query(query)
        reader = live_meta.follow(self.store, self.index, filter)  # no index: said before the encoder loads
        q = self.encoder.encode_texts([query])[0]
        if mode == "vector":
            return self._detailed(self._search(q, k, modality, filter, exclude, "search", reader))
        hits = hybrid_search(reader, query, k, mode=mode, lexical_weight=lexical_weight, filter=filter,
                             exclude=library.skip(self.removed_items(), exclude), lexical=self._lexical.search,
                             vector=lambda n: [(h.item_id, h.score) for h in
                                               self._search(q, n, modality, filter, exclude, "search", reader)])
        told = self._lexical.generated_only(query, [h.item_id for h in hits if "lexical" in h.sources])
        return self._detailed([ScoredItem(h.item_id, h.score, [*h.sources, *(["generated"] if h.item_id in told
                                                                              else [])]) for h in hits])

    @cached_property
    def _lexical(self) -> LexicalIndex:
        from recsys.store.lexical import LexicalIndex

        return LexicalIndex(self.store)

    def search_image(self, image: bytes, k: int = 20, *, modality: str = "image", filter: ItemFilter | None = None,
                     exclude: Sequence[str] = ()) -> list[ScoredItem]:
        """Items that look like ``image`` (encoded bytes); BadMedia when it cannot be decoded safely."""
        from recsys.encoders.fit import limits_of
        from recsys.encoders.media import image_from_bytes

        check(k, modality)
        img = image_from_bytes(image, limits_of(self.settings))
        q = self.encoder.encode_images([img])[0]
        return self._detailed(self._search(q, k, modality, filter, exclude, "image_search"))

    def similar(self, item_id: str, k: int = 20, *, modality: str = "fused", filter: ItemFilter | None = None,
                exclude: Sequence[str] = ()) -> list[ScoredItem]:
        """Items nearest to ``item_id`` (itself left out)."""
        check(k, modality)
        self._known_item(item_id)
        reader = live_meta.follow(self.store, self.index, filter)
        hits = reader.similar(item_id, k, library.skip(self.removed_items(), exclude), modality=modality, filter=filter)
        return self._detailed(scored_hits(hits, "similar"))

    def more_like_these(self, positive: Mapping[str, float] | Sequence[str],
                        negative: Mapping[str, float] | Sequence[str] | None = None, k: int = 20, *,
                        filter: ItemFilter | None = None, exclude: Sequence[str] = ()) -> list[ScoredItem]:
        """Items like the positive examples ({id: weight}, ids, one id) and unlike the negative ones (index/examples)"""
        from recsys.index import more_like_these

        check(k, "fused")
        positive, negative = library.examples(positive), library.examples(negative or {})
        for i in [*positive, *negative]:
            self._known_item(i)
        reader = live_meta.follow(self.store, self.index, filter)
        hits = more_like_these(reader, positive, negative, k, filter=filter,
                               exclude=library.skip(self.removed_items(), exclude))
        return self._detailed(scored_hits(hits, "more_like_these"))

    def _known_item(self, item_id: str) -> None:
        """UnknownItem unless the index serves ``item_id``: deleted (a hidden one has a page), unknown, not built."""
        if item_id in self.removed_items() and self.get_item(item_id).get("deleted"):
            raise UnknownItem(deleted_message(item_id))
        if item_id not in self.index:
            self.get_item(item_id)  # raises UnknownItem for ids the store does not know
            raise UnknownItem(f"item {item_id!r} is not indexed yet; run `recsys build` (or wait for the delta)")

    # -- personalisation ------------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 20, *, filter: ItemFilter | None = None, exclude: Sequence[str] = (),
                  diversity: float | None = None, explain: bool = False,
                  fresh: bool = False, now: datetime | None = None, rules: ListRules | None = None) -> list[ScoredItem]:
        """Personal top-k for a stored user (history read fresh from the store: feedback counts at once).

        An unknown user gets trending items, tagged ``trending``/``popular``. Lists are cached under a key made of
        everything they depend on (the served generations, the user's events, the removed items and the request),
        so a new event, a deletion or a new generation is a different key: a hit is always what ranking would give.
        ``fresh`` ranks anew even when a cached list exists (HTTP: ``Cache-Control: no-cache``). ``now`` ranks as of
        that time (replays, backtests, ``recsys evaluate``): only events before it count, the user's own included;
        None is the configured clock (:meth:`clock`). ``rules``: boosts, bury, pinned slots, an exploration share, the
        list's source (:class:`recsys.serving.rules.ListRules`).
        """
        req = ListRequest(user_id, k, filter, library.ids(exclude), diversity, explain, fresh, now, rules or NO_RULES)
        return self._recommend(req)[0]

    def _recommend(self, req: ListRequest) -> tuple[list[ScoredItem], Timings]:
        check(req.k, "fused")
        served = self.generations.current()
        timings: Timings = {}  # the reads on the driver itself, as the server's loop reads
        key, hit, records, removed, when, details = run_reads(self._keyed(req, served, timings), self.store.read)
        if hit is not None:
            return list(hit), {**timings, "cached": 1.0}
        return self._rank_records(records, key, req, served, removed, when, timings, details), timings

    def _keyed(self, req: ListRequest, served: Served, timings: Timings) -> Generator[Read, list[Any], Keyed]:
        """A list request up to ranking, as the reads it needs: yields each (statement, parameters), is sent its rows,
        returns the cache key, the cached list (None: rank), the history's records on a miss, the removed ids, the time
        and the details version. :meth:`_recommend` reads on a connection, :meth:`arecommend` on the event loop."""
        t0, who = time.perf_counter(), {"user_id": req.user_id}
        # The key is made before a miss reads the history: an event landing in between leaves the list under the
        # older key, which no later request matches (events are only ever added).
        history, version, details = yield from self._marks.state(req.user_id)
        removed = self._removed.known(version) or self._removed.remember(removed_state_of((yield REMOVED_STATE, {})))
        when = self.clock(served, req.now)
        key = req.key(served, history, (removed[0], details), when)
        hit = None if req.fresh else self._results.get(key)
        t1 = time.perf_counter()
        timings["state_ms"] = (t1 - t0) * 1000
        if hit is not None:
            return key, hit, HistoryRead([], None), removed[1], when, details
        records = yield from read_history(who, history_limit(served, req.now))
        timings["history_ms"] = (time.perf_counter() - t1) * 1000
        return key, None, records, removed[1], when, details

    async def arecommend(self, user_id: str, k: int = 20, *, filter: ItemFilter | None = None,
                         exclude: Sequence[str] = (), diversity: float | None = None, explain: bool = False,
                         fresh: bool = False, now: datetime | None = None,
                         rules: ListRules | None = None) -> tuple[list[ScoredItem], Timings]:
        """:meth:`recommend` for an event loop, with its per-stage timings (ms). The cache key, and on a miss the
        history, are read without leaving the loop (:meth:`Store.fetch`) and a cached list is answered there; only
        ranking (milliseconds of CPU) goes to a worker thread, at most ``ranking.serving_threads`` at once."""
        import anyio
        import anyio.to_thread

        check(k, "fused")
        req = ListRequest(user_id, k, filter, library.ids(exclude), diversity, explain, fresh, now, rules or NO_RULES)
        if self._ranking_slots is None:
            self._ranking_slots = anyio.CapacityLimiter(self.settings.ranking.serving_threads)
        served = self.generations.loaded
        if served is None:  # nothing loaded yet: the first call loads the generations, in a thread
            return await anyio.to_thread.run_sync(self._recommend, req, limiter=self._ranking_slots)
        timings: Timings = {}  # every read is made here: a ranking slot waits on no database
        key, hit, records, removed, when, ver = await arun_reads(self._keyed(req, served, timings), self.store.fetch)
        if hit is not None:
            return list(hit), {**timings, "cached": 1.0}
        queued = time.perf_counter()

        def rank() -> tuple[list[ScoredItem], Timings]:  # queue_ms: waiting for a ranking slot and the thread
            timings["queue_ms"] = (time.perf_counter() - queued) * 1000
            return self._rank_records(records, key, req, served, removed, when, timings, ver), timings

        return await anyio.to_thread.run_sync(rank, limiter=self._ranking_slots)

    def _rank_records(self, records: HistoryRead, key: tuple[Any, ...], req: ListRequest, served: Served,
                      removed: AbstractSet[str], now: float, timings: Timings, details: int | None) -> list[ScoredItem]:
        """Rank ``req`` from the history records read for ``key`` as of ``now`` (days), filtered on the item details
        of the key's version ``details``, cache the list under the key, and add the stages' timings to ``timings``.
        Events at or after an explicit ``req.now`` are not part of the history (:func:`history_as_of`)."""
        hist = None
        ranker = self._ranker_of(served, req.rules)
        if ranker is not None:
            hist, now = history_as_of(records.records, ranker.table, now, req.now is not None,
                                      ranker.stats.uncounted(req.user_id, records.first_id))
        out = self._rank(hist, req.k, req.filter, req.exclude, req.diversity, req.explain, served=served,
                         removed=removed, now=now, timings=timings, rules=req.rules, details=details,
                         seed=zlib.crc32(f"{req.user_id}:{math.floor(now * 24)}".encode()))
        t0 = time.perf_counter()
        self._results.put(key, out)
        timings["cache_put_ms"] = (time.perf_counter() - t0) * 1000
        return list(out)

    @library.ranked_as_served
    def buy_again(self, user_id: str, k: int = 20, *, now: datetime | None = None) -> list[ScoredItem]:
        """The user's own items (bought, viewed, liked) most likely to be wanted again, by the same ranker: the list
        that keeps repeats out of the personal one (``ranking.max_repeat_share``). Empty for a user with no history."""
        from recsys.ranking.history import TYPE_CODE
        from recsys.ranking.lists import ListPolicy

        check(k, "fused")
        served = self.generations.current()
        ranker = served.ranker
        if ranker is None:
            raise self.generations.no_ranker()
        when = self.clock(served, now)
        read = run_reads(read_history({"user_id": user_id}, history_limit(served, now)), self.store.read)
        hist, when = history_as_of(read.records, ranker.table, when, now is not None,
                                   ranker.stats.uncounted(user_id, read.first_id))
        removed = self.removed_items()
        own = [i for i in (ranker.table.ids[r] for r in dict.fromkeys(hist.rows.tolist())) if i not in removed]
        if not own:
            return []
        recs = ranker.recommend(hist, min(k, len(own)), allowed=own, now=when, exclude_seen=False, policy=ListPolicy())
        bought = {ranker.table.ids[r] for r in hist.rows[hist.types == TYPE_CODE["purchase"]]}  # else "seen", as in
        return self._detailed([ScoredItem(r.item_id, round(float(r.score), 6),  # the personal list's sources
                                          ["repurchase" if r.item_id in bought else "seen"], None) for r in recs])

    def recommend_for_events(self, events: Sequence[Mapping[str, Any]], k: int = 20, *,
                             filter: ItemFilter | None = None, exclude: Sequence[str] = (),
                             diversity: float | None = None, explain: bool = False,
                             rules: ListRules | None = None) -> list[ScoredItem]:
        """A session's list from posted events (item_id, type, timestamp?, value?), not stored: as a stored user's."""
        served, rules = self.generations.current(), rules or NO_RULES
        hist, now = session_as_of(events, self._ranker_of(served, rules), self.clock(served))
        return self._rank(hist, k, filter, exclude, diversity, explain, served=served, now=now, rules=rules)

    def trending(self, k: int = 20, *, filter: ItemFilter | None = None,
                 exclude: Sequence[str] = ()) -> list[ScoredItem]:
        """What is popular in the recent window (the cold-start list)."""
        return self._rank(None, k, filter, exclude, 0.0, False)

    @library.ranked_as_served
    def _rank(self, hist: pd.DataFrame | History | None, k: int, filter: ItemFilter | None, exclude: Sequence[str],
              diversity: float | None, explain: bool, *, served: Served | None = None,
              removed: AbstractSet[str] | None = None, now: float | None = None, details: int | None = None,
              timings: Timings | None = None, rules: ListRules = NO_RULES, seed: int = 0) -> list[ScoredItem]:
        check(k, "fused")
        if diversity is not None and not 0.0 <= diversity <= 1.0:
            raise ValidationFailed(f"diversity must be in [0, 1], got {diversity}")
        served = served or self.generations.current()
        ranker = self._ranker_of(served, rules)
        if ranker is None:
            raise self.generations.no_ranker()
        t0 = time.perf_counter()
        allowed = live_meta.allowed_ids(self.store, served.reader, filter, details)  # details: the key's version
        removed = library.skip(self.removed_items() if removed is None else removed, exclude)
        t1 = time.perf_counter()
        when = self.clock(served) if now is None else now
        recs = ranker.recommend(None if rules.source == "popular" else hist, rules.fetch(k), allowed=allowed,
                                exclude=removed, diversity=diversity, explain=explain, now=when,
                                boosts=dict(rules.boosts) or None, exclude_seen=rules.exclude_seen, shown=k)
        t2 = time.perf_counter()
        out = []
        for r in recs:
            expl = r.explanation
            if explain:
                expl = {**(expl or {}), "index_generation": served.reader.generation_id}
            out.append(ScoredItem(r.item_id, round(float(r.score), 6), list(r.sources), expl))
        if rules.reorders:
            out = with_rules(out, k, rules, ranker, hist, removed, when, seed, allowed)
        t3 = time.perf_counter()
        out = self._detailed(out[:k])
        if timings is not None:  # details_ms: the one read of the items' titles, prices and images
            timings.update({"filters_ms": (t1 - t0) * 1000, "rank_ms": (t2 - t1) * 1000, **ranker.last_timings,
                            "details_ms": (time.perf_counter() - t3) * 1000})
        return out

    def _ranker_of(self, served: Served, rules: ListRules) -> RankingPipeline | None:
        """The ranker of a list: the served one, or the stored generation its rules (a variant) name."""
        return served.ranker if rules.ranker is None else self.generations.variant_ranker(rules.ranker, served)
