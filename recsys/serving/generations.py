"""What the read path serves: an index generation and the ranker built over its vectors, loaded lazily and swapped
together when newer ones appear (DESIGN.md section 1). The ranker always ranks over the item vectors of the served
index generation, so an item is rankable the moment it is indexed.

An experiment's variant may rank with another stored ranker generation (:meth:`Generations.variant_ranker`): loaded
on first use over the served index's vectors and catalogue, and moved to each new index like the served one.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.config import Settings
from recsys.errors import RankerError
from recsys.store import Store
from recsys.store.deadline import OncePerMinute
from recsys.store.queries import events_frame, frame_watermark, items_frame, training_watermark

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.orm import Session

    from recsys.index import IndexReader
    from recsys.ranking import RankingPipeline, SimpleVectors
    from recsys.ranking.generations import RankerGeneration

log = logging.getLogger(__name__)
REPEATS = OncePerMinute()
"""A refresh runs every second: while the database is down, "ranker could not be loaded" once a minute per message."""
log.addFilter(REPEATS)

RANKER_RETRY_S = 60.0
"""A ranker generation that failed to load by itself (not for a database outage) is tried again after this long."""


def _served_items(session: Session) -> pd.DataFrame:
    """The catalogue a served ranker holds: hidden and deleted items stay rows of its table (while the index holds
    them), as every request leaves out the items removed at that moment (``Recommender.removed_items``): unhiding acts
    at once, and a history naming a deleted item ranks alike in processes loaded before and after the delete."""
    return items_frame(session, include_removed=True).assign(hidden=False, deleted=False)


class UnknownRanker(RankerError):
    """A ranker generation named for a list (an experiment's variant) is not stored, or cannot rank the served
    index; the message names the generations there are."""


@dataclass
class Served:
    """The index generation and the ranker built over its vectors, swapped together."""

    reader: IndexReader
    ranker: RankingPipeline | None
    ranker_path: str | None
    stats_version: str = ""
    """The events watermark the ranker's statistics were recounted at (``ranking.live_stats_s``); "" for training's."""


class Generations:
    """The served pair of one data directory. Requests take :meth:`current` (one attribute read); :meth:`refresh`
    prepares a newer pair off to the side and publishes it with one assignment."""

    def __init__(self, settings: Settings, store: Store) -> None:
        from recsys.index import IndexHandle, index_root

        self.settings, self.store = settings, store
        self._handle = IndexHandle(index_root(settings), settings=settings.index)
        self._served: Served | None = None
        self._lock = threading.RLock()
        self._bad_ranker: tuple[str | None, str, float] | None = None
        """(ranker path, the index generation it failed to load over, when): over another index it may load."""
        self._stats_at = float("-inf")
        """When the served statistics were last recounted (``ranking.live_stats_s``)."""
        self.ranker_error: str | None = None
        """Why recommendations are off, for readiness."""
        self.waiting: str | None = None
        """A newer index generation not served yet, and why (readiness' ``reason`` while the old pair serves)."""
        self._variants: dict[str, tuple[IndexReader, RankingPipeline]] = {}
        """Ranker generations named by variants, by name: (the index they were last moved to, the ranker)."""
        self._variant_failed: dict[str, tuple[float, RankerError]] = {}
        self._variant_lock = threading.Lock()
        self._search_checked: tuple[str, str | None] | None = None  # (index generation, why search is off)

    @property
    def loaded(self) -> Served | None:
        """The served pair, or None before the first load (nothing is read)."""
        return self._served

    def current(self) -> Served:
        """The served pair, loaded on first use (raises when no index generation can be loaded)."""
        if self._served is None:
            self.refresh(strict=True)
        assert self._served is not None
        return self._served

    def latest_index(self, *, strict: bool = False) -> IndexReader:
        """The newest index generation on disk, whether served yet or not (what the jobs build and train on)."""
        self._handle.refresh(strict=strict)
        return self._handle.get()

    def no_ranker(self) -> RankerError:
        if self.ranker_error is not None:
            return RankerError(f"recommendations are off for now: {self.ranker_error}")
        return RankerError("no ranker has been trained yet; run `recsys build` (or `recsys train`)")

    def refresh(self, *, strict: bool = False) -> bool:
        """Load a newer index or ranker generation if one appeared; True when something was swapped in.

        Concurrent requests see either the old pair or the new one, never a mix. A generation that fails to load
        leaves the old one served. A ranker that failed for a passing reason (the database, to read the catalogue)
        is tried again on the next refresh; one that failed by itself (a broken artifact) after ``RANKER_RETRY_S``.
        """
        from recsys.ranking import rankers_root
        from recsys.ranking.artifact import current_generation
        from recsys.ranking.generations import warn_unserved

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
            waits = old is not None and old.reader is not reader and _waits_for_ranker(old, reader)
            if old is not None and (old.reader is reader or waits) and (
                    ranker_path == old.ranker_path or self._ranker_failed_recently(ranker_path, reader)):
                if waits:
                    self.waiting = _wait_note(old, reader)
                return self._recount_stats(old)
            unserved = warn_unserved(rankers_root(self.settings)) if rpath is None else None
            try:
                ranker = self._load_ranker(reader, rpath, old)
            except Exception as e:
                if not self._ranker_failed(e, ranker_path, old, reader):
                    return False
                ranker, ranker_path = None, None
            else:
                self.ranker_error = unserved  # None, or trained rankers on disk that none points at
            self._served = Served(reader, ranker, ranker_path)  # recounted again: the new index may add items
            self.waiting = None
            log.info("serving index %s with ranker %s", reader.generation_id, ranker_path)
            return True

    def _ranker_failed(self, e: Exception, ranker_path: str | None, old: Served | None, reader: IndexReader) -> bool:
        """Note why the ranker at ``ranker_path`` could not be loaded; True when the new index is to be served
        without a ranker, False when the whole old pair keeps serving (its ranker ranks over its own index)."""
        passing = is_outage(e)
        self.ranker_error = ("the database could not be read to load the ranker; retrying" if passing
                             else _load_failure(e))
        if not passing:
            self._bad_ranker = (ranker_path, reader.generation_id, time.monotonic())
        if old is not None and not passing and _waits_for_ranker(old, reader):
            self.waiting = _wait_note(old, reader)
        if old is not None and (passing or old.reader is reader or _waits_for_ranker(old, reader)):
            log.warning("ranker %s could not be loaded (%s: %s); still serving index %s with ranker %s",
                        ranker_path, type(e).__name__, e, old.reader.generation_id, old.ranker_path)
            return False
        # Search keeps working without a ranker; recommendations say what to do, readiness says so.
        log.error("ranker %s could not be loaded (%s: %s); recommendations are off until it loads",
                  ranker_path, type(e).__name__, e)
        return True

    def _recount_stats(self, old: Served) -> bool:
        """With ``ranking.live_stats_s``: the served ranker's statistics recounted over the events training reads (no
        evaluation user's) once new ones arrived, at most that often; published like a generation, kept on failure."""
        every = self.settings.ranking.live_stats_s
        if every <= 0 or old.ranker is None or time.monotonic() - self._stats_at < every:
            return False
        self._stats_at = time.monotonic()
        try:
            with self.store.session() as s:
                if training_watermark(s) == old.stats_version:  # replayed withheld shoppers are nothing new
                    return False
                events = events_frame(s, training=True)
            mark = frame_watermark(events)  # what was counted: on PostgreSQL the two reads see two snapshots
            ranker = old.ranker.with_events(events, pairs=self.settings.ranking.live_stats_pairs)
            ranker.stats.counted_through = int(events["event_id"].max()) if len(events) else None  # see ItemStats
        except Exception as e:
            log.warning("statistics not recounted (%s: %s); keeping the current ones", type(e).__name__, e)
            return False
        self._served = Served(old.reader, ranker, old.ranker_path, mark)
        log.info("ranker statistics recounted over %d events (%s)", len(events), mark)
        return True

    def _ranker_failed_recently(self, ranker_path: str | None, reader: IndexReader) -> bool:
        bad = self._bad_ranker
        return (bad is not None and bad[:2] == (ranker_path, reader.generation_id)
                and time.monotonic() - bad[2] < RANKER_RETRY_S)

    def _load_ranker(self, reader: IndexReader, rpath: Any, old: Served | None) -> RankingPipeline | None:
        from recsys.ranking import RankingPipeline

        if rpath is None:
            return None
        vectors = vectors_of_index(self.settings, reader)
        with self.store.session() as s:
            items = _served_items(s)
        if old is not None and old.ranker is not None and old.ranker_path == str(rpath):
            # Same model, new catalogue: no retraining. A copy, so requests in flight keep the old catalogue.
            ranker = copy.copy(old.ranker)
            ranker.update_items(vectors, items, reader)
            return ranker
        return RankingPipeline.load(rpath, vectors=vectors, items=items, expect_encoder_id=vectors.encoder_id,
                                    search=reader, settings=self.settings)

    def warm_lists(self) -> int:
        """Compute the served ranker's kept neighbour lists ahead of requests (catalogues of at most
        ``ranking.warm_lists_max`` items), stopping early once another catalogue is served; the lists computed. The
        server runs it in a background thread after each new generation (:class:`recsys.api.app.Runtime`)."""
        served = self._served
        ranker = None if served is None else served.ranker
        if ranker is None or ranker.table.n > self.settings.ranking.warm_lists_max:
            return 0
        table = ranker.table

        def replaced() -> bool:  # a recount of the statistics keeps the table (and the lists): not a stop
            now = self._served
            return now is None or now.ranker is None or now.ranker.table is not table

        return ranker.warm_lists(replaced)

    def variant_ranker(self, name: str, served: Served) -> RankingPipeline:
        """The stored ranker generation ``name`` (a version, or its ``ranker-`` id) over ``served``'s index: loaded
        once, on first use, and moved to a newer index like the served ranker (no retraining). The served ranker
        when ``name`` is its generation. UnknownRanker when it is not stored or was trained on other vectors (a
        broken one: RankerError); either is remembered for ``RANKER_RETRY_S`` rather than retried per request."""
        if served.ranker is not None and served.ranker_path is not None and \
                name in (Path(served.ranker_path).name, served.ranker.ranker_id):
            return served.ranker
        got = self._variants.get(name)
        if got is not None and got[0] is served.reader:
            return got[1]
        with self._variant_lock:  # one load per generation, whatever the concurrent requests
            got = self._variants.get(name)
            if got is not None and got[0] is served.reader:
                return got[1]
            failed = self._variant_failed.get(name)
            if failed is not None and time.monotonic() - failed[0] < RANKER_RETRY_S:
                raise failed[1]
            try:
                ranker = self._load_variant(name, served, got[1] if got is not None else None)
            except RankerError as e:
                self._variant_failed[name] = (time.monotonic(), e)
                raise
            except Exception as e:
                if is_outage(e):
                    raise
                log.exception("ranker generation %s (named by an experiment) could not be loaded", name)
                err = RankerError(f"ranker generation {name!r} (named by an experiment) could not be loaded "
                                  f"({type(e).__name__}); check it with `recsys ranker list`, or point the "
                                  "experiment's variant at another generation")
                self._variant_failed[name] = (time.monotonic(), err)
                raise err from None
            self._variant_failed.pop(name, None)
            self._variants[name] = (served.reader, ranker)
            return ranker

    def _load_variant(self, name: str, served: Served, old: RankingPipeline | None) -> RankingPipeline:
        from recsys.ranking import RankingPipeline, rankers_root

        m = served.reader.manifest
        root = rankers_root(self.settings)
        gen = find_generation(root, name, m.encoder_id, m.dim)
        vectors = vectors_of_index(self.settings, served.reader)
        with self.store.session() as s:
            items = _served_items(s)
        if old is not None:  # moved to the new index: a copy, so requests in flight keep the old catalogue
            ranker = copy.copy(old)
            ranker.update_items(vectors, items, served.reader)
            return ranker
        log.info("loading ranker generation %s for an experiment's variant", gen.version)
        return RankingPipeline.load(root / gen.version, vectors=vectors, items=items,
                                    expect_encoder_id=vectors.encoder_id, search=served.reader,
                                    settings=self.settings)

    def status(self) -> dict[str, Any]:
        """What is served. ``not_served`` names what is off (search when no query can be encoded for the served
        index, recommendations and trending without a ranker); ``reason`` and ``ranker_error`` say why."""
        try:
            served = self.current()
        except Exception as e:
            return {"ready": False, "reason": public_reason(e), "index_generation": None, "ranker_version": None,
                    "encoder_id": None, "not_served": ["search", "recommendations", "trending"]}
        search = self._search_problem(reader := served.reader)  # heads of other towers: every text search fails
        reason = "; ".join(r for r in (search, self.waiting if served.ranker is not None else None) if r)
        off = (["search"] if search else []) + ([] if served.ranker is not None else ["recommendations", "trending"])
        return {"ready": True, **({"reason": reason} if reason else {}), "index_generation": reader.generation_id,
                "ranker_version": served.ranker.ranker_id if served.ranker else None,
                "encoder_id": reader.manifest.encoder_id, "items": len(reader), "not_served": off,
                "ranker_error": None if served.ranker is not None else self.ranker_error}

    def _search_problem(self, reader: IndexReader) -> str | None:
        """Why no query can be encoded for the served index (:func:`recsys.index.servable.unqueryable`), once each."""
        if self._search_checked is None or self._search_checked[0] != reader.generation_id:
            from recsys.encoders.encoder import query_encoder_of
            from recsys.index import index_root, list_generations
            from recsys.index.servable import unqueryable

            why = None
            try:
                why = unqueryable(reader.manifest, list_generations(index_root(self.settings)),
                                  lambda e: query_encoder_of(self.settings, e))
            except Exception as e:  # readiness never fails for this check
                log.warning("could not check the query encoder of index %s (%r)", reader.generation_id, e)
            self._search_checked = (reader.generation_id, why)
        return self._search_checked[1]


def find_generation(root: Path, name: str, encoder_id: str | None = None,
                    dim: int | None = None) -> RankerGeneration:
    """The stored ranker generation ``name`` (a version, or its ``ranker-`` id, as ``recsys ranker list`` and
    ``/readyz`` show them) that can rank vectors of ``encoder_id``/``dim``; UnknownRanker naming the generations
    there are, or those that fit, otherwise (no paths: the message may reach a caller)."""
    from recsys.ranking.generations import list_generations

    gens = {g.version: g for g in list_generations(root)}
    gen = gens.get(name)
    if gen is None and name.startswith("ranker-"):
        gen = gens.get(name.removeprefix("ranker-"))
    if gen is None:
        there = ", ".join(gens) or "none (run `recsys train`)"
        raise UnknownRanker(f"no ranker generation {name!r} is stored; available: {there}")
    why = gen.incompatibility(encoder_id, dim)
    if why is not None:
        fits = ", ".join(v for v, g in gens.items() if g.incompatibility(encoder_id, dim) is None) or "none"
        raise UnknownRanker(f"ranker generation {gen.version!r} cannot rank the served index ({why}); "
                            f"generations that fit: {fits}")
    return gen


def vectors_of_index(settings: Settings, reader: IndexReader) -> SimpleVectors:
    """The item vectors of an index generation (fused, and text and image where indexed), with the tower text
    vectors of its encoder: what a ranker ranks over."""
    from recsys.encoders.vectors import load_tower_text
    from recsys.ranking import SimpleVectors

    ids = reader.item_ids
    fused, _ = reader.vectors_of(ids, "fused")
    text = reader.vectors_of(ids, "text")[0] if "text" in reader.modalities else None
    image = reader.vectors_of(ids, "image")[0] if "image" in reader.modalities else None
    tower = load_tower_text(settings, reader.manifest.encoder_id, list(ids))
    return SimpleVectors(list(ids), fused, text, image, reader.manifest.encoder_id, tower)


def is_outage(e: BaseException) -> bool:
    """A passing failure of the database (unreachable, hung, locked), as opposed to a broken artifact."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from recsys.errors import StoreError

    return isinstance(e, StoreError | OperationalError | DBAPIError)


def public_reason(e: BaseException) -> str:
    """Why nothing is served, in words safe for any caller (no paths, hosts or driver messages)."""
    from recsys.errors import NoIndex

    if is_outage(e):
        return "the database is unreachable"
    if isinstance(e, NoIndex):
        return "no index generation has been built yet: run `recsys build` (the server picks it up by itself)"
    return "the index generation could not be loaded"


def _waits_for_ranker(old: Served, reader: IndexReader) -> bool:
    """Whether ``reader`` (newer than the served pair) holds another encoder's vectors while the served pair ranks:
    a build with new encoder heads publishes the index before its ranker has trained (or one interrupted there). The
    old pair keeps serving whole, search included (its queries are encoded by the old heads), until a ranker for the
    new vectors appears: switching alone would turn recommendations off on every server meanwhile."""
    return old.ranker is not None and old.reader.manifest.encoder_id != reader.manifest.encoder_id


def _wait_note(old: Served, reader: IndexReader) -> str:
    return (f"index generation {reader.generation_id} (encoder {reader.manifest.encoder_id}) waits for a ranker "
            f"trained on its vectors; still serving {old.reader.generation_id} with its ranker (a running `recsys "
            "build` trains one; otherwise run `recsys train`)")


def _load_failure(e: Exception) -> str:
    """Why the ranker did not load, with the way back: our own errors' message (it names the ranker, the cause and
    often the fix), another's type alone (its text may hold paths)."""
    from recsys.errors import RecsysError

    text = e.message.strip().splitlines()[0][:300] if isinstance(e, RecsysError) and e.message.strip() else ""
    fix = "" if "`recsys " in text else ("; `recsys ranker rollback` serves the previous one, `recsys train` fits a "
                                         "new one")
    return f"the current ranker generation could not be loaded ({text or type(e).__name__}){fix}"
