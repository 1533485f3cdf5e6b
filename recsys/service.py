"""The Recommender: the one object the HTTP API, the CLI and notebooks call (DESIGN.md section 1).

It holds handles, not state: SQL is the source of truth; the index and the ranker are immutable generations that it
loads lazily and swaps atomically when newer ones appear (:meth:`Recommender.refresh`). The ranker always ranks over
the item vectors of the served index generation, so an item is rankable the moment it is indexed.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.config import Settings, get_settings
from recsys.errors import RankerError, UnknownItem, ValidationFailed
from recsys.lru import LRU
from recsys.store import Store
from recsys.store.events import EventResult, ingest_events
from recsys.store.queries import (
    REMOVED_STATE,
    REMOVED_VERSION,
    REQUEST_STATE,
    USER_EVENTS,
    events_frame,
    items_frame,
    removed_state,
    removed_state_of,
    request_state,
    request_state_of,
    user_event_records,
    user_event_records_of,
)

if TYPE_CHECKING:
    import pandas as pd

    from recsys.encoders.base import Encoder
    from recsys.index import IndexHandle, IndexReader, ItemFilter
    from recsys.ranking import RankingPipeline
    from recsys.ranking.history import History
    from recsys.store.lexical import LexicalIndex

log = logging.getLogger(__name__)

Progress = Callable[..., None]
MODALITIES = ("fused", "text", "image")
RANKER_RETRY_S = 60.0
"""A ranker generation that failed to load by itself (not for a database outage) is tried again after this long."""


@dataclass
class ScoredItem:
    """One result: the item id, its score, where it came from and (on request) why."""

    item_id: str
    score: float
    sources: list[str] = field(default_factory=list)
    explanation: dict[str, Any] | None = None
    item: dict[str, Any] | None = None
    """What a client shows: title, category, price, image_url (``api.result_details``)."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"item_id": self.item_id, "score": self.score, "sources": list(self.sources)}
        if self.explanation is not None:
            d["explanation"] = self.explanation
        if self.item is not None:
            d["item"] = self.item
        return d

    @cached_property
    def as_json(self) -> str:
        """This result as the API's JSON object. Memoised: the items of a cached list are serialised once, not on
        every request the cache answers (results are never changed once made)."""
        return json.dumps(result_object(self.item_id, self.score, self.sources, self.explanation, self.item),
                          default=str, allow_nan=False)


def result_list_bytes(items: Sequence[ScoredItem]) -> int:
    """Memory held by a cached list of results, estimated from each result's JSON (memoised anyway: the API sends
    it): measured with tracemalloc at ~500 bytes per plain result and ~900 with an explanation, in the bound."""
    return 120 + sum(300 + int(2.5 * len(it.as_json)) for it in items)


def result_object(item_id: Any, score: Any, sources: Any, explanation: Any,
                  item: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A result as plain JSON: a non-finite score becomes null, numpy values in explanations plain numbers."""
    score = float(score)
    out = {"item_id": str(item_id), "score": score if math.isfinite(score) else None,
           "sources": [str(s) for s in sources or ()], "explanation": plain_json(explanation)}
    if item is not None:
        out["item"] = plain_json(dict(item))
    return out


def plain_json(v: Any) -> Any:
    """``v`` with numpy scalars and arrays made lists and numbers, and non-finite floats made None."""
    if isinstance(v, dict):
        return {str(k): plain_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain_json(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        return plain_json(v.item() if getattr(v, "ndim", 0) == 0 else v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class _Served:
    """The index generation and the ranker built over its vectors, swapped together."""

    reader: IndexReader
    ranker: RankingPipeline | None
    ranker_path: str | None
    stats_version: str = ""
    """The events watermark the ranker's statistics were recounted at (``ranking.live_stats_s``); "" for training's."""


class Recommender:
    """Retrieval, recommendations, feedback and builds over one store and one data directory."""

    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        from recsys.index import IndexHandle, index_root

        self.settings = settings or get_settings()
        self.store = store or Store.open(self.settings)
        self._handle: IndexHandle = IndexHandle(index_root(self.settings), settings=self.settings.index)
        self._served: _Served | None = None
        self._encoder: Encoder | None = None
        self._lock = threading.RLock()
        self._bad_ranker: tuple[str | None, float] | None = None  # (ranker path, when it failed to load)
        self._stats_at = float("-inf")
        """When the served statistics were last recounted (``ranking.live_stats_s``)."""
        self._ranker_error: str | None = None  # why recommendations are off, for readiness
        self._local = threading.local()
        self._results: LRU[list[ScoredItem]] = LRU(self.settings.ranking.result_cache_size,
                                                    max_bytes=int(self.settings.ranking.result_cache_mb * 2**20),
                                                    weigh=result_list_bytes)
        self._ranking_slots: Any = None  # arecommend's CapacityLimiter, made on first use
        self._removed_cache: tuple[int, frozenset[str]] | None = None  # (removed-items version, their ids)
        self._changes_lock = threading.Lock()
        self._changes_runs = 0  # index_changes runs started; the last finished one and its report:
        self._changes_last: tuple[int, dict[str, Any]] | None = None

    @property
    def last_timings(self) -> dict[str, float]:
        """Per-stage timings (ms) of this thread's last recommendation request."""
        if not hasattr(self._local, "timings"):
            self._local.timings = {}
        return self._local.timings  # type: ignore[no-any-return]

    @last_timings.setter
    def last_timings(self, value: dict[str, float]) -> None:
        self._local.timings = value

    # -- artifacts ------------------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The query encoder (loaded on first text or image query: a few seconds)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from recsys.encoders import get_encoder

                    self._encoder = get_encoder(self.settings)
        return self._encoder

    def _served_now(self) -> _Served:
        if self._served is None:
            self.refresh(strict=True)
        assert self._served is not None
        return self._served

    @property
    def index(self) -> IndexReader:
        return self._served_now().reader

    @property
    def ranker(self) -> RankingPipeline:
        served = self._served_now()
        if served.ranker is None:
            raise self._no_ranker()
        return served.ranker

    def _no_ranker(self) -> RankerError:
        if self._ranker_error is not None:
            return RankerError(f"recommendations are off for now: {self._ranker_error}")
        return RankerError("no ranker has been trained yet; run `recsys build` (or `recsys train`)")

    def refresh(self, *, strict: bool = False) -> bool:
        """Load a newer index or ranker generation if one appeared; True when something was swapped in.

        The new pair is prepared off to the side and published with one assignment, so concurrent requests see
        either the old pair or the new one, never a mix. A generation that fails to load leaves the old one served.
        A ranker that failed for a passing reason (the database, to read the catalogue) is tried again on the next
        refresh; one that failed by itself (a broken artifact) after ``RANKER_RETRY_S``.
        """
        from recsys.ranking.artifact import current_generation
        from recsys.ranking.pipeline import rankers_root

        with self._lock:
            try:
                self._handle.refresh(strict=strict or self._served is None)
            except Exception:
                if strict or self._served is None:
                    raise
                log.exception("index refresh failed; still serving the old generation")
                return False
            reader = self._handle.get()
            rpath = current_generation(rankers_root(self.settings))
            ranker_path = str(rpath) if rpath else None
            old = self._served
            # Compared with what is served (not with the handle's last change): a pair that could not be loaded
            # last time is tried again.
            if old is not None and old.reader is reader and (
                    ranker_path == old.ranker_path or self._ranker_failed_recently(ranker_path)):
                return self._recount_stats(old)
            try:
                ranker = self._load_ranker(reader, rpath, old)
            except Exception as e:
                passing = _is_outage(e)
                self._ranker_error = ("the database could not be read to load the ranker; retrying" if passing
                                      else "the current ranker generation could not be loaded")
                if old is not None and (passing or old.reader is reader):
                    # Keep the whole old pair: its ranker ranks over its own index. Retried on the next refresh.
                    log.warning("ranker %s could not be loaded (%s: %s); still serving index %s with ranker %s",
                                ranker_path, type(e).__name__, e, old.reader.generation_id, old.ranker_path)
                    if not passing:
                        self._bad_ranker = (ranker_path, time.monotonic())
                    return False
                # Search keeps working without a ranker; recommendations say what to do, readiness says so.
                log.error("ranker %s could not be loaded (%s: %s); recommendations are off until it loads",
                          ranker_path, type(e).__name__, e)
                if not passing:
                    self._bad_ranker = (ranker_path, time.monotonic())
                ranker, ranker_path = None, None
            else:
                self._ranker_error = None
            self._served = _Served(reader, ranker, ranker_path)
            log.info("serving index %s with ranker %s", reader.generation_id, ranker_path)
            return True

    def _recount_stats(self, old: _Served) -> bool:
        """With ``ranking.live_stats_s``: the served ranker's statistics recounted from every stored event when new
        ones arrived (at most that often), published like a new generation. Failures keep the old ones."""
        every = self.settings.ranking.live_stats_s
        if every <= 0 or old.ranker is None or time.monotonic() - self._stats_at < every:
            return False
        self._stats_at = time.monotonic()
        try:
            with self.store.session() as s:
                mark = _events_watermark(s)
                if mark == old.stats_version:
                    return False
                events = events_frame(s)
            ranker = old.ranker.with_events(events)
        except Exception as e:
            log.warning("statistics not recounted (%s: %s); keeping the current ones", type(e).__name__, e)
            return False
        self._served = _Served(old.reader, ranker, old.ranker_path, mark)
        log.info("ranker statistics recounted over %d events (%s)", len(events), mark)
        return True

    def _ranker_failed_recently(self, ranker_path: str | None) -> bool:
        bad = self._bad_ranker
        return bad is not None and bad[0] == ranker_path and time.monotonic() - bad[1] < RANKER_RETRY_S

    def _load_ranker(self, reader: IndexReader, rpath: Any, old: _Served | None) -> RankingPipeline | None:
        from recsys.ranking import RankingPipeline

        if rpath is None:
            return None
        vectors = self._vectors_of_index(reader)
        with self.store.session() as s:
            items = items_frame(s)
        if old is not None and old.ranker is not None and old.ranker_path == str(rpath):
            # Same model, new catalogue: no retraining. A copy, so requests in flight keep the old catalogue.
            ranker = copy.copy(old.ranker)
            ranker.update_items(vectors, items, reader)
            return ranker
        return RankingPipeline.load(rpath, vectors=vectors, items=items, expect_encoder_id=vectors.encoder_id,
                                    search=reader, settings=self.settings)

    def _vectors_of_index(self, reader: IndexReader) -> Any:
        from recsys.encoders.vectors import load_tower_text
        from recsys.ranking import SimpleVectors

        ids = reader.item_ids
        fused, _ = reader.vectors_of(ids, "fused")
        text = reader.vectors_of(ids, "text")[0] if "text" in reader.modalities else None
        image = reader.vectors_of(ids, "image")[0] if "image" in reader.modalities else None
        tower = load_tower_text(self.settings, reader.manifest.encoder_id, list(ids))
        return SimpleVectors(list(ids), fused, text, image, reader.manifest.encoder_id, tower)

    def status(self) -> dict[str, Any]:
        """What is served. ``not_served`` names what is off (recommendations and trending without a ranker) and
        ``ranker_error`` says why, when a trained ranker exists but could not be loaded."""
        try:
            served = self._served_now()
        except Exception as e:
            return {"ready": False, "reason": public_reason(e), "index_generation": None, "ranker_version": None,
                    "encoder_id": None, "not_served": ["search", "recommendations", "trending"]}
        return {"ready": True, "index_generation": served.reader.generation_id,
                "ranker_version": served.ranker.ranker_id if served.ranker else None,
                "encoder_id": served.reader.manifest.encoder_id, "items": len(served.reader),
                "not_served": [] if served.ranker is not None else ["recommendations", "trending"],
                "ranker_error": None if served.ranker is not None else self._ranker_error}

    # -- retrieval ------------------------------------------------------------------------------------------
    def _removed(self) -> frozenset[str]:
        """Ids of the hidden or deleted items, re-read only when the catalogue's removed-items version moved."""
        with self.store.reading() as c:
            removed = self._cached_removed(c.execute(REMOVED_VERSION).scalar())
            return removed if removed is not None else self._remember_removed(removed_state(c))[1]

    def _cached_removed(self, version: int | None) -> frozenset[str] | None:
        cached = self._removed_cache
        return cached[1] if version is not None and cached is not None and cached[0] == version else None

    def _remember_removed(self, state: tuple[frozenset[str], int | None]) -> tuple[Hashable, frozenset[str]]:
        """Keep a fresh read of the removed items under its version; (their part of a cache key, the ids)."""
        removed, version = state
        if version is None:  # a schema without the version (another database): the ids themselves are the key
            return ("ids", len(removed), hash(removed)), removed
        self._removed_cache = (version, removed)
        return version, removed

    def _hits(self, hits: Sequence[tuple[str, float]], source: str) -> list[ScoredItem]:
        return [ScoredItem(i, round(float(sc), 6), [source]) for i, sc in hits]

    def _detailed(self, items: list[ScoredItem]) -> list[ScoredItem]:
        """``items`` with what a client shows (one read for the list; a cached list keeps them), unless
        ``api.result_details`` is off."""
        if not items or not self.settings.api.result_details:
            return items
        from recsys.store.summaries import item_summaries

        with self.store.reading() as c:
            found = item_summaries(c, [it.item_id for it in items])
        return [replace(it, item=found.get(it.item_id)) for it in items]

    @staticmethod
    def _check(k: int, modality: str) -> None:
        if not 1 <= k <= 1000:
            raise ValidationFailed(f"k must be between 1 and 1000, got {k}")
        if modality not in MODALITIES:
            raise ValidationFailed(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")

    def _search(self, query: np.ndarray, k: int, modality: str, filter: ItemFilter | None,
                exclude: Sequence[str], source: str, reader: IndexReader | None = None) -> list[ScoredItem]:
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if not np.isfinite(q).all() or not np.linalg.norm(q):
            raise ValidationFailed("the query vector is empty or not finite")
        hits = (reader or self.index).search(q, k, self._removed() | set(exclude), modality=modality,
                                             filter=filter)[0]
        return self._hits(hits, source)

    def search_text(self, query: str, k: int = 20, *, modality: str = "fused", filter: ItemFilter | None = None,
                    exclude: Sequence[str] = (), mode: str | None = None,
                    lexical_weight: float | None = None) -> list[ScoredItem]:
        """Items matching ``query``; ``modality="image"`` searches the image vectors only (text -> image).

        ``mode``: ``hybrid`` fuses keyword and vector results (``lexical_weight``: the keywords' share, 0..1),
        ``vector`` and ``lexical`` use one side (see :mod:`recsys.index.hybrid`). None: hybrid for the fused
        vectors, vector when one tower is asked for by ``modality`` (text -> image stays text -> image)."""
        from recsys.index.hybrid import check_mode, default_mode, hybrid_search

        self._check(k, modality)
        mode = mode or default_mode(modality)
        check_mode(mode, lexical_weight)
        if not query or not query.strip():
            raise ValidationFailed("the search query is empty")
        if len(query) > 2000:
            raise ValidationFailed("the search query is longer than 2,000 characters")
        q = self.encoder.encode_texts([query.strip()])[0]
        if mode == "vector":
            return self._detailed(self._search(q, k, modality, filter, exclude, "search"))
        reader, removed = self.index, self._removed() | set(exclude)
        hits = hybrid_search(reader, query, k, mode=mode, lexical_weight=lexical_weight, filter=filter,
                             exclude=removed, lexical=self._lexical.search,
                             vector=lambda n: [(h.item_id, h.score) for h in
                                               self._search(q, n, modality, filter, exclude, "search", reader)])
        return self._detailed([ScoredItem(h.item_id, h.score, h.sources) for h in hits])

    @cached_property
    def _lexical(self) -> LexicalIndex:
        from recsys.store.lexical import LexicalIndex

        return LexicalIndex(self.store)

    def search_image(self, image: bytes, k: int = 20, *, modality: str = "image", filter: ItemFilter | None = None,
                     exclude: Sequence[str] = ()) -> list[ScoredItem]:
        """Items that look like ``image`` (encoded bytes); BadMedia when it cannot be decoded safely."""
        from recsys.encoders.fit import limits_of
        from recsys.encoders.media import image_from_bytes

        self._check(k, modality)
        img = image_from_bytes(image, limits_of(self.settings))
        q = self.encoder.encode_images([img])[0]
        return self._detailed(self._search(q, k, modality, filter, exclude, "image_search"))

    def similar(self, item_id: str, k: int = 20, *, modality: str = "fused", filter: ItemFilter | None = None,
                exclude: Sequence[str] = ()) -> list[ScoredItem]:
        """Items nearest to ``item_id`` (itself left out)."""
        self._check(k, modality)
        self._known_item(item_id)
        hits = self.index.similar(item_id, k, self._removed() | set(exclude), modality=modality, filter=filter)
        return self._detailed(self._hits(hits, "similar"))

    def more_like_these(self, positive: Mapping[str, float], negative: Mapping[str, float] | None = None,
                        k: int = 20, *, filter: ItemFilter | None = None,
                        exclude: Sequence[str] = ()) -> list[ScoredItem]:
        """Items like the weighted positive examples and unlike the negative ones (rule: recsys.index.examples)."""
        from recsys.index import more_like_these

        self._check(k, "fused")
        for i in [*positive, *(negative or {})]:
            self._known_item(i)
        hits = more_like_these(self.index, dict(positive), dict(negative or {}), k, filter=filter,
                               exclude=self._removed() | set(exclude))
        return self._detailed(self._hits(hits, "more_like_these"))

    def _known_item(self, item_id: str) -> None:
        if item_id not in self.index:
            from recsys.store.items import get_item

            with self.store.session() as s:
                get_item(s, item_id)  # raises UnknownItem for ids the store does not know
            raise UnknownItem(f"item {item_id!r} is not indexed yet; run `recsys build` (or wait for the delta)")

    # -- personalisation ------------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 20, *, filter: ItemFilter | None = None, exclude: Sequence[str] = (),
                  diversity: float | None = None, explain: bool = False, debug: bool = False,
                  fresh: bool = False, now: datetime | None = None) -> list[ScoredItem]:
        """Personal top-k for a stored user (history read fresh from the store: feedback counts at once).

        An unknown user gets trending items, tagged ``trending``/``popular``. Lists are cached under a key made of
        everything they depend on (the served generations, the user's event ids, the removed items and the request),
        so a new event, a deletion or a new generation is a different key: a hit is always what ranking would give.
        ``fresh`` ranks anew even when a cached list exists (HTTP: ``Cache-Control: no-cache``). ``now`` ranks as of
        that time (replays, backtests, ``recsys evaluate``): only events before it count, the user's own included;
        None is the configured clock (:meth:`clock`).
        """
        self._check(k, "fused")
        served = self._served_now()
        when = self.clock(served, now)
        t0 = time.perf_counter()
        # The key is made before a miss reads the history: an event landing in between leaves the list under the
        # older key, which no later request matches (events are only ever added).
        with self.store.reading() as c:
            event_ids, version = request_state(c, user_id)
            removed = self._cached_removed(version)
            removed_key, removed = (version, removed) if removed is not None else \
                self._remember_removed(removed_state(c))
            key = _result_key(served, user_id, event_ids, removed_key, k, filter, exclude, diversity, explain,
                              _now_key(when, now))
            hit = None if fresh else self._results.get(key)
            records = user_event_records(c, user_id) if hit is None else []
        self.last_timings = {"history_ms": (time.perf_counter() - t0) * 1000}
        if hit is not None:
            self.last_timings["cached"] = 1.0
            return list(hit)
        return self._rank_records(records, key, k, filter, exclude, diversity, explain, served, removed, when,
                                 cut=now is not None)

    def clock(self, served: _Served | None = None, now: datetime | None = None) -> float:
        """The time a request is ranked at, in days since the epoch: ``now`` when given, else ``ranking.clock``:
        ``wall`` (the wall clock), ``data`` (the day after the newest event the ranker knows: a historical dataset
        replayed as if it were today), ``auto`` (the wall clock, unless the newest event is more than
        ``ranking.stale_days`` old, then ``data``) or an ISO 8601 time (a pinned clock)."""
        from recsys.ranking.history import day_of

        if now is not None:
            try:
                return float(day_of(now))  # type: ignore[arg-type]
            except (OverflowError, ValueError) as e:  # pandas' out-of-bounds error is a ValueError
                raise ValidationFailed(f"now must be a time between 1970 and 2262, got {now!r}") from e
        mode = self.settings.ranking.clock
        wall = float(day_of(datetime.now(UTC)))  # type: ignore[arg-type]
        if mode == "wall":
            return wall
        if mode not in ("data", "auto"):
            return float(day_of(datetime.fromisoformat(mode)))  # type: ignore[arg-type]
        served = served or self._served_now()
        end = served.ranker.stats.end_ts + 1.0 if served.ranker is not None and served.ranker.stats.end_ts else wall
        if mode == "data":
            return end
        return wall if wall - end <= self.settings.ranking.stale_days else end

    async def arecommend(self, user_id: str, k: int = 20, *, filter: ItemFilter | None = None,
                         exclude: Sequence[str] = (), diversity: float | None = None, explain: bool = False,
                         fresh: bool = False, now: datetime | None = None) -> tuple[list[ScoredItem], dict[str, float]]:
        """:meth:`recommend` for an event loop, with its per-stage timings (ms). The cache key, and on a miss the
        history, are read without leaving the loop (:meth:`Store.fetch`) and a cached list is answered there; only
        ranking (milliseconds of CPU) goes to a worker thread, at most ``ranking.serving_threads`` at once."""
        import anyio
        import anyio.to_thread

        self._check(k, "fused")
        if self._ranking_slots is None:
            self._ranking_slots = anyio.CapacityLimiter(self.settings.ranking.serving_threads)
        served = self._served
        if served is None:  # nothing loaded yet: the first call loads the generations, in a thread
            def first() -> tuple[list[ScoredItem], dict[str, float]]:
                out = self.recommend(user_id, k, filter=filter, exclude=exclude, diversity=diversity,
                                     explain=explain, fresh=fresh, now=now)
                return out, dict(self.last_timings)

            return await anyio.to_thread.run_sync(first, limiter=self._ranking_slots)
        t0 = time.perf_counter()
        event_ids, version = request_state_of(await self.store.fetch(REQUEST_STATE, {"user_id": user_id}))
        removed = self._cached_removed(version)
        removed_key, removed = (version, removed) if removed is not None else \
            self._remember_removed(removed_state_of(await self.store.fetch(REMOVED_STATE, {})))
        when = self.clock(served, now)
        key = _result_key(served, user_id, event_ids, removed_key, k, filter, exclude, diversity, explain,
                          _now_key(when, now))
        hit = None if fresh else self._results.get(key)
        timings = {"state_ms": (time.perf_counter() - t0) * 1000}
        if hit is not None:
            timings["cached"] = 1.0
            return list(hit), timings

        t1 = time.perf_counter()  # the history is read here too: a ranking slot waits on no database
        records = user_event_records_of(await self.store.fetch(USER_EVENTS, {"user_id": user_id}))
        timings["history_ms"] = (time.perf_counter() - t1) * 1000

        def rank() -> tuple[list[ScoredItem], dict[str, float]]:
            self.last_timings = dict(timings)
            out = self._rank_records(records, key, k, filter, exclude, diversity, explain, served, removed, when,
                                     cut=now is not None)
            return out, dict(self.last_timings)

        return await anyio.to_thread.run_sync(rank, limiter=self._ranking_slots)

    def _rank_records(self, records: Sequence[tuple[Any, ...]], key: tuple[Any, ...], k: int,
                      filter: ItemFilter | None, exclude: Sequence[str], diversity: float | None, explain: bool,
                      served: _Served, removed: AbstractSet[str], now: float, cut: bool) -> list[ScoredItem]:
        """Rank from the history records read for ``key`` as of ``now`` (days) and cache the list under it.
        With ``cut`` (an explicit time: replays, backtests) events at or after ``now`` are not part of the history;
        on the clock a user's own newer event moves their "now" forward instead (a live event in a store whose
        clock follows its historical data)."""
        hist = None
        if served.ranker is not None:
            hist, now = _history_as_of(records, served.ranker.table, now, cut)
        out = self._rank(hist, k, filter, exclude, diversity, explain, served=served, removed=removed, now=now)
        self._results.put(key, out)
        return list(out)

    def buy_again(self, user_id: str, k: int = 20, *, now: datetime | None = None) -> list[ScoredItem]:
        """The user's own items (bought, viewed, liked) most likely to be wanted again, by the same ranker: the list
        that keeps repeats out of the personal one (``ranking.max_repeat_share``). Empty for a user with no history."""
        from recsys.ranking.lists import ListPolicy

        self._check(k, "fused")
        served = self._served_now()
        ranker = served.ranker
        if ranker is None:
            raise self._no_ranker()
        when = self.clock(served, now)
        with self.store.reading() as c:
            records = user_event_records(c, user_id)
        hist, when = _history_as_of(records, ranker.table, when, cut=now is not None)
        removed = self._removed()
        own = [i for i in (ranker.table.ids[r] for r in dict.fromkeys(hist.rows.tolist())) if i not in removed]
        if not own:
            return []
        recs = ranker.recommend(hist, min(k, len(own)), allowed=own, now=when, exclude_seen=False,
                                policy=ListPolicy())
        return self._detailed([ScoredItem(r.item_id, round(float(r.score), 6), ["repurchase"], None) for r in recs])

    def recommend_for_events(self, events: Sequence[Mapping[str, Any]], k: int = 20, *,
                             filter: ItemFilter | None = None, exclude: Sequence[str] = (),
                             diversity: float | None = None, explain: bool = False) -> list[ScoredItem]:
        """Session recommendations from posted events (item_id, type, timestamp?, value?), not stored."""
        import pandas as pd

        from recsys.store.events import parse_event

        rows = []
        for i, raw in enumerate(events):
            try:
                ev = parse_event({"user_id": "session", **raw})
            except (ValueError, TypeError) as e:
                raise ValidationFailed(f"event {i}: {e}") from None
            rows.append({"user_id": "session", "item_id": ev.item_id, "type": ev.type, "value": ev.value,
                         "ts": ev.ts})
        hist = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "value", "ts"])
        if len(hist):
            hist = hist.sort_values("ts", kind="stable")
        self.last_timings = {}
        return self._rank(hist, k, filter, exclude, diversity, explain)

    def trending(self, k: int = 20, *, filter: ItemFilter | None = None,
                 exclude: Sequence[str] = ()) -> list[ScoredItem]:
        """What is popular in the recent window (the cold-start list)."""
        self.last_timings = {}
        return self._rank(None, k, filter, exclude, 0.0, False)

    def _rank(self, hist: pd.DataFrame | History | None, k: int, filter: ItemFilter | None, exclude: Sequence[str],
              diversity: float | None, explain: bool, *, served: _Served | None = None,
              removed: AbstractSet[str] | None = None, now: float | None = None) -> list[ScoredItem]:
        self._check(k, "fused")
        if diversity is not None and not 0.0 <= diversity <= 1.0:
            raise ValidationFailed(f"diversity must be in [0, 1], got {diversity}")
        served = served or self._served_now()
        ranker = served.ranker
        if ranker is None:
            raise self._no_ranker()
        t0 = time.perf_counter()
        allowed = served.reader.allowed_ids(filter) if filter is not None and not filter.is_empty else None
        removed = (self._removed() if removed is None else removed) | frozenset(exclude)
        t1 = time.perf_counter()
        recs = ranker.recommend(hist, k, allowed=allowed, exclude=removed, diversity=diversity, explain=explain,
                                now=self.clock(served) if now is None else now)
        t2 = time.perf_counter()
        self.last_timings.update({"filters_ms": (t1 - t0) * 1000, "rank_ms": (t2 - t1) * 1000})
        self.last_timings.update(getattr(ranker, "last_timings", {}) or {})
        out = []
        for r in recs:
            expl = r.explanation
            if explain:
                expl = {**(expl or {}), "index_generation": served.reader.generation_id,
                        "ranker": ranker.ranker_id}
            out.append(ScoredItem(r.item_id, round(float(r.score), 6), list(r.sources), expl))
        return self._detailed(out)

    # -- feedback and catalogue -----------------------------------------------------------------------------
    def ingest_events(self, events: Sequence[Mapping[str, Any]]) -> list[EventResult]:
        """Store events (committed before this returns); each gets a stored / duplicate / error result."""
        return ingest_events(self.store, events)

    def delete_user(self, user_id: str) -> int:
        """Remove a user and their events (their cached lists stop matching: the key holds the event ids)."""
        from recsys.store.events import delete_user

        return delete_user(self.store, user_id)

    def get_item(self, item_id: str) -> dict[str, Any]:
        from recsys.store.items import item_details

        with self.store.session() as s:
            return item_details(s, item_id)

    def upsert_items(self, items: Sequence[Mapping[str, Any]], *, index: bool = True) -> list[dict[str, Any]]:
        """Insert or update items (canonical fields of the generic importer); per-item results.

        With ``index``, new and changed items are embedded and served through a delta generation right away.
        Safe to call from many threads, processes and replicas at once, also for the same new item id.
        """
        from pathlib import Path

        from recsys.store.importers.generic import item_record

        results: list[dict[str, Any]] = []
        records = []
        for i, raw in enumerate(items):
            try:
                records.append(item_record(dict(raw), Path.cwd()))
                results.append({"index": i, "item_id": str(raw.get("item_id")), "status": "stored"})
            except (ValueError, TypeError) as e:
                results.append({"index": i, "item_id": str(raw.get("item_id")), "status": "error", "error": str(e)})
        if records:
            self._write_items(records)
            if index:
                self.index_changes()
        return results

    def _write_items(self, records: Sequence[Any]) -> None:
        from sqlalchemy.exc import IntegrityError

        from recsys.store.importers.report import TableCounts
        from recsys.store.importers.writer import upsert_items

        # The writer reads which ids exist, then inserts the others: a concurrent writer of the same new id may
        # insert it in between (a unique violation). Tried again, the row exists and is updated instead.
        for attempt in range(3):
            try:
                with self.store.session() as s:
                    upsert_items(s, records, TableCounts())
                return
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("items written concurrently by another writer; writing again")

    def delete_item(self, item_id: str) -> None:
        from recsys.store.items import set_flags

        with self.store.session() as s:
            set_flags(s, [item_id], deleted=True)

    def index_changes(self) -> dict[str, Any]:
        """Embed new/changed items and publish them as a delta generation (no full rebuild).

        One run at a time per data directory (threads, worker processes and replicas sharing it: the embedding
        snapshot and the generations are files). A caller whose items a run started after its write already
        covered takes that run's report instead of running again, so a burst of writers costs a few runs."""
        from recsys.encoders import embed_catalog
        from recsys.index import build_from_catalog, index_root
        from recsys.index.layout import build_lock

        seen = self._changes_runs
        with self._changes_lock:
            last = self._changes_last
            if last is not None and last[0] > seen:
                return last[1]
            self._changes_runs += 1
            run = self._changes_runs
            with build_lock(index_root(self.settings), "changes.lock"):
                embed_catalog(self.store, self.settings)
                report = build_from_catalog(self.store, self.settings, mode="auto")
            self._changes_last = (run, report)
        self.refresh()
        return report

    # -- offline jobs ---------------------------------------------------------------------------------------
    def train(self, progress: Progress | None = None) -> dict[str, Any]:
        """Train the ranker on every stored event over the served index's vectors; a new current generation."""
        from recsys.ranking.pipeline import train_ranker

        self._handle.refresh()
        reader = self._handle.get()
        from recsys.store.queries import evaluation_users

        with self.store.session() as s:
            events = events_frame(s)
            items = items_frame(s)
            watermark = _events_watermark(s)  # read with the events, so it names exactly what was trained on
            held = evaluation_users(s)
        events = events[~events["user_id"].isin(held)]  # users replayed by `evaluate --test-events` never train
        vectors = self._vectors_of_index(reader)
        pipe, path = train_ranker(events, items, vectors, self.settings, search=reader, progress=progress,
                                  manifest={"events_watermark": watermark})
        self.refresh()
        return {"ranker": pipe.ranker_id, "path": str(path), "events": len(events),
                "metrics": pipe.manifest.get("metrics", {})}

    def _encoder_fitted(self) -> bool:
        """Whether the configured preset has current fitted heads that this version of recsys can load."""
        from recsys.encoders import get_encoder, get_preset
        from recsys.encoders.encoder import current_heads_dir
        from recsys.errors import IncompatibleArtifact

        if current_heads_dir(self.settings, get_preset(self.settings.encoder.preset, self.settings)) is None:
            return False
        try:
            self._encoder = get_encoder(self.settings)
        except IncompatibleArtifact:
            return False
        return True

    def build(self, progress: Progress | None = None, *, force: bool = False) -> dict[str, Any]:
        """Fit the encoder if needed, embed, index, train. Each stage skips itself when its inputs are unchanged,
        so a build is idempotent, and an interrupted one resumes from the last finished stage."""
        from recsys.encoders import embed_catalog, fit_encoder
        from recsys.index import build_from_catalog
        from recsys.ranking import read_manifest
        from recsys.ranking.artifact import current_generation
        from recsys.ranking.pipeline import rankers_root

        report: dict[str, Any] = {}
        t = time.perf_counter()
        if force or not self._encoder_fitted():
            report["encoder_fit"] = fit_encoder(self.store, self.settings, _stage(progress, "encoder fit")).to_dict()
            self._encoder = None
        else:
            report["encoder_fit"] = "skipped (fitted heads present)"
        report["embed"] = _as_dict(embed_catalog(self.store, self.settings, _stage(progress, "embed")))
        report["index"] = build_from_catalog(self.store, self.settings, _stage(progress, "index"),
                                             mode="full" if force else "auto")
        self._handle.refresh(strict=True)
        reader = self._handle.get()
        with self.store.session() as s:
            watermark = _events_watermark(s)
        rpath = current_generation(rankers_root(self.settings))
        manifest = read_manifest(rpath) if rpath else {}
        same = (manifest.get("events_watermark") == watermark
                and manifest.get("encoder_id") == reader.manifest.encoder_id)
        if force or not same:
            report["train"] = self.train(_stage(progress, "train"))
        else:
            report["train"] = "skipped (no new events since the current ranker)"
        self.refresh()
        report["seconds"] = round(time.perf_counter() - t, 1)
        return report


    def evaluate(self, k: int = 20, *, test_events: Any = None, fmt: str | None = None,
                 protocol: str | None = None, part: str | None = "test",
                 progress: Progress | None = None) -> dict[str, Any]:
        """``recsys evaluate`` (DESIGN.md section 4): ours vs the baselines on a temporal leave-last-out split.

        On the stored events a ranker is fitted on the split's training part only (the served one has seen the
        targets) and the users of ``part`` (by salted hash; ``validation`` for tuning, ``test`` reported once, None
        for everyone) are evaluated as of their target time. With ``test_events`` (users unknown to the store) their
        histories are replayed through :meth:`ingest_events`, and each user is asked through :meth:`recommend` with
        ``now`` at the target time: the very path the API serves. Replayed users are marked as evaluation users, so a
        rerun of the same file works and no later ``train`` learns from them.
        """
        from pathlib import Path

        from recsys.evaluation import Batch, evaluate_store, evaluate_test_events
        from recsys.ranking import RankingPipeline
        from recsys.store.queries import evaluation_users, mark_evaluation_users

        reader = self.index
        vectors = self._vectors_of_index(reader)
        with self.store.session() as s:
            held = evaluation_users(s)
            events = events_frame(s)
            items = items_frame(s)
            users = set(events["user_id"].astype(str))  # a stored user without events (u.user) leaks nothing
        events = events[~events["user_id"].isin(held)]
        removed = self._removed()
        common = {"item_ids": list(reader.item_ids), "vectors": vectors.fused, "k": k,
                  "content_vectors": getattr(vectors, "tower_text", None)}
        if test_events is not None:
            if fmt not in ("hm", "movielens"):
                raise ValidationFailed("--test-events needs --format hm or --format movielens")

            def replay(records: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
                out = self.ingest_events(records)
                mark_evaluation_users(self.store, {str(r["user_id"]) for r in records}, Path(test_events).name)
                return out

            def served(split: Any) -> Batch:
                def fn(users: Sequence[str], hists: Sequence[pd.DataFrame], k: int) -> list[list[str]]:
                    return [[r.item_id for r in self.recommend(u, k, now=split.target_time[u].to_pydatetime(),
                                                              fresh=True)] for u in users]
                return Batch(fn)

            result = evaluate_test_events(Path(test_events), fmt, store_events=events, replay=replay,
                                          make_ours=served, known_users=users - held, **common)
        else:
            def fit(split: Any) -> Batch:
                pipe = RankingPipeline.fit(split.train, items, vectors, self.settings, search=reader)

                def fn(users: Sequence[str], hists: Sequence[pd.DataFrame], k: int) -> list[list[str]]:
                    from threadpoolctl import threadpool_limits

                    now = [split.target_time[u].to_pydatetime() for u in users]
                    with threadpool_limits(1):  # many small matrix products: BLAS threads only contend
                        recs = pipe.recommend_many([h if len(h) else None for h in hists], k, exclude=removed,
                                                   now=now)
                    return [[r.item_id for r in rs] for rs in recs]

                return Batch(fn)

            result = evaluate_store(events, make_ours=fit, protocol=protocol or "auto", part=part, **common)
        result.setdefault("index_generation", reader.generation_id)
        return result


def _now_key(when: float, explicit: datetime | None) -> float:
    """The time part of a cache key: an explicit time exactly; the clock to the hour (a cached list's trend windows
    lag the clock by less than an hour)."""
    return when if explicit is not None else math.floor(when * 24.0)


def _history_as_of(records: Sequence[tuple[Any, ...]], table: Any, now: float, cut: bool) -> tuple[History, float]:
    """A user's history from their event records, and the time to rank it at. With ``cut`` (an explicit time:
    replays, backtests) events at or after ``now`` are not part of it; on the clock a user's own newer event moves
    their "now" forward instead (a live event in a store whose clock follows its historical data)."""
    from recsys.ranking.history import history_from_records

    hist = history_from_records([r[:4] for r in records], table)
    if len(hist) and hist.ts[-1] >= now:
        if cut:
            hist = hist.prefix(int(np.searchsorted(hist.ts, now, side="left")))
        else:
            now = float(hist.ts[-1]) + 1e-6
    return hist, now


def _stage(progress: Progress | None, name: str) -> Any:
    """``progress`` with each update named after the build stage: ``update(done, total)`` becomes
    ``progress(name, done, total)`` and ``update(step, done, total)`` ``progress("name: step", ...)``."""
    if progress is None:
        return None

    def update(step: Any, done: Any = None, total: Any = None) -> None:
        if isinstance(step, str):
            progress(f"{name}: {step}", done, total)
        else:
            progress(name, step, done)

    return update


def _result_key(served: _Served, user_id: str, event_ids: list[int], removed_key: Hashable, k: int,
                filter: ItemFilter | None, exclude: Sequence[str], diversity: float | None,
                explain: bool, now: float = 0.0) -> tuple[Any, ...]:
    """Everything a recommendation list depends on: the generations, the user's events, the removed items (their
    version) and the request (a hash of the event ids keeps the key small)."""
    return (served.reader.generation_id, served.ranker_path, served.stats_version, user_id,
            hash(tuple(sorted(event_ids))), removed_key,
            k, repr(filter), tuple(exclude), diversity, explain, now)


def _is_outage(e: BaseException) -> bool:
    """A passing failure of the database (unreachable, hung, locked), as opposed to a broken artifact."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from recsys.errors import StoreError

    return isinstance(e, StoreError | OperationalError | DBAPIError)


def public_reason(e: BaseException) -> str:
    """Why nothing is served, in words safe for any caller (no paths, hosts or driver messages)."""
    from recsys.errors import NoIndex

    if _is_outage(e):
        return "the database is unreachable"
    if isinstance(e, NoIndex):
        return "no index generation has been built yet"
    return "the index generation could not be loaded"


def _as_dict(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj


def _events_watermark(session: Any) -> str:
    from sqlalchemy import func, select

    from recsys.store.tables import NOT_HISTORY, Event

    # impressions train nothing: posting them does not make the next build retrain
    n, last = session.execute(select(func.count(Event.id), func.max(Event.id))
                              .where(Event.type.not_in(NOT_HISTORY))).one()
    return f"{n}:{last}"
