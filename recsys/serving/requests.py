"""The parts of a read request that do not need the Recommender: checks, the removed items, the clock, the key a
personal list is cached under, and the history it is ranked from."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Generator, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from recsys.config import Settings
from recsys.encoders.base import MODALITIES
from recsys.errors import BeforeData, ValidationFailed
from recsys.lru import LRU
from recsys.serving.rules import NO_RULES, ListRules
from recsys.store import Store
from recsys.store.limits import MAX_K, MAX_QUERY
from recsys.store.queries import (
    FIRST_EVENT,
    HISTORY_MARK,
    REMOVED_VERSION,
    REQUEST_STATE,
    USER_EVENTS,
    Mark,
    Record,
    history_mark_of,
    latest_user_events,
    removed_state,
    request_state_of,
    user_event_records_of,
)

if TYPE_CHECKING:
    import pandas as pd

    from recsys.index import ItemFilter
    from recsys.ranking.history import History
    from recsys.serving.generations import Served


def check(k: int, modality: str) -> None:
    if not 1 <= k <= MAX_K:
        raise ValidationFailed(f"k must be between 1 and {MAX_K}, got {k}")
    check_modality(modality)


def check_query(query: str) -> str:
    """``query`` stripped; ValidationFailed when it is empty or longer than the API takes."""
    if not query or not query.strip():
        raise ValidationFailed("the search query is empty")
    if len(query) > MAX_QUERY:
        raise ValidationFailed(f"the search query is longer than {MAX_QUERY:,} characters")
    return query.strip()


def check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ValidationFailed(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")


class RemovedItems:
    """Ids of the hidden or deleted items, re-read only when the catalogue's removed-items version moved."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: tuple[int, frozenset[str]] | None = None  # (removed-items version, their ids)

    def ids(self) -> frozenset[str]:
        with self.store.reading() as c:
            known = self.known(c.execute(REMOVED_VERSION).scalar())
            return (known or self.remember(removed_state(c)))[1]

    def known(self, version: int | None) -> tuple[Hashable, frozenset[str]] | None:
        """(their part of a cache key, the ids) when the ids of ``version`` are held; None: read them."""
        cached = self._cache
        return (version, cached[1]) if version is not None and cached is not None and cached[0] == version else None

    def remember(self, state: tuple[frozenset[str], int | None]) -> tuple[Hashable, frozenset[str]]:
        """Keep a fresh read of the removed items under its version; (their part of a cache key, the ids)."""
        removed, version = state
        if version is None:  # a schema without the version (another database): the ids themselves are the key
            return ("ids", len(removed), hash(removed)), removed
        self._cache = (version, removed)
        return version, removed


class HistoryMarks:
    """Per user, the mark of their history (the part of a cached list's key their events make) under the mark of
    all their events, impressions included: the cheap one to read. Equal marks of all the events are the same events
    (:data:`recsys.store.queries.Mark`), hence the same history; only when that mark moved (a new event, an
    impression, a deletion) is the history's own mark read again."""

    def __init__(self, size: int) -> None:
        self._marks: LRU[tuple[Mark, Mark]] = LRU(size)  # user -> (mark of all their events, of their history)

    def state(self, user_id: str) -> Generator[Read, list[Any], tuple[Mark, int | None, int | None]]:
        """The reads of (the user's history mark, the removed-items version, the item-details version), as
        :meth:`recsys.service.Recommender._keyed` makes them: one statement when the user's events did not move."""
        who = {"user_id": user_id}
        events, version, details = request_state_of((yield REQUEST_STATE, who))
        known = self._marks.get(user_id)
        if known is not None and known[0] == events:
            return known[1], version, details
        history = history_mark_of((yield HISTORY_MARK, who)) if events[0] else (0, None)
        self._marks.put(user_id, (events, history))
        return history, version, details


@dataclass(frozen=True)
class ListRequest:
    """A personal list asked for (:meth:`recsys.service.Recommender.recommend`)."""

    user_id: str
    k: int
    filter: ItemFilter | None
    exclude: Sequence[str]
    diversity: float | None
    explain: bool
    fresh: bool = False
    now: datetime | None = None
    rules: ListRules = NO_RULES
    """Boosts, bury, pins, exploration, the list's source (:mod:`recsys.serving.rules`)."""

    def key(self, served: Served, history: Mark, removed_key: Hashable, when: float) -> tuple[Any, ...]:
        """Everything the list depends on: the generations, the user's history (its :data:`Mark`: count and highest
        event id, see :class:`HistoryMarks`), the catalogue's state (the removed items' and the item details'
        versions) and the request, ranked at ``when`` (days)."""
        return (served.reader.generation_id, served.ranker_path, served.stats_version, self.user_id, history,
                removed_key,
                self.k, repr(self.filter), tuple(self.exclude), self.diversity, self.explain,
                now_key(when, self.now), self.rules)


Read = tuple[Any, dict[str, Any]]
"""A statement and its parameters (``Store.read`` / ``Store.fetch``)."""
T = TypeVar("T")


def run_reads(steps: Generator[Read, list[Any], T], read: Callable[[Any, dict[str, Any]], list[Any]]) -> T:
    """Drive ``steps``, a generator that yields the reads it needs and is sent their rows, to its result."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(read(*statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def arun_reads(steps: Generator[Read, list[Any], T],
                        fetch: Callable[[Any, dict[str, Any]], Awaitable[list[Any]]]) -> T:
    """:func:`run_reads` with the reads awaited (``Store.fetch``: on the event loop)."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(await fetch(*statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def now_key(when: float, explicit: datetime | None) -> float:
    """The time part of a cache key: an explicit time exactly; the clock to the hour (a cached list's trend windows
    lag the clock by less than an hour)."""
    return when if explicit is not None else math.floor(when * 24.0)


def clock(settings: Settings, served: Callable[[], Served], now: datetime | None = None) -> float:
    """The time a request is ranked at, in days since the epoch: ``now`` when given, else ``ranking.clock``:
    ``wall`` (the wall clock), ``data`` (the day after the newest event the ranker knows, strays far ahead of the
    rest left out, :meth:`~recsys.ranking.stats.ItemStats.data_end`: a historical dataset replayed as if it were
    today), ``auto`` (the wall clock, unless that event is more than ``ranking.stale_days`` old, then ``data``) or an
    ISO 8601 time (a pinned clock). ``served`` gives the served pair, asked for by all but the ``wall`` clock."""
    from recsys.ranking.history import day_of

    mode = settings.ranking.clock
    if now is not None or mode not in ("data", "auto", "wall"):
        return _given_time(now, mode, served)
    wall = float(day_of(datetime.now(UTC)))  # type: ignore[arg-type]
    if mode == "wall":
        return wall
    ranker = served().ranker
    stale = settings.ranking.stale_days
    end = ranker.stats.data_end(stale) + 1.0 if ranker is not None and ranker.stats.end_ts else wall
    if mode == "data":
        return end
    return wall if wall - end <= stale else end


def _given_time(now: datetime | None, pinned: str, served: Callable[[], Served]) -> float:
    """``now``, else the pinned clock (``ranking.clock``), in days: within pandas' years and not before the first
    event the ranker knows (nothing was sold or seen yet: any list would be the catalogue in id order)."""
    from recsys.ranking.history import day_of

    when = now if now is not None else datetime.fromisoformat(pinned)
    said = f"now {when.isoformat() if isinstance(when, datetime) else when}" if now is not None else \
        f"the pinned clock ranking.clock={pinned}"
    try:
        day = float(day_of(when))  # type: ignore[arg-type]
    except (OverflowError, ValueError) as e:  # pandas' out-of-bounds error is a ValueError
        raise ValidationFailed(f"{said} is not a time between the years 1678 and 2261") from e
    ranker = served().ranker
    first = ranker.stats.ev_ts[0] if ranker is not None and len(ranker.stats.ev_ts) else -math.inf
    if day < first:
        start = datetime.fromtimestamp(first * 86400.0, UTC).isoformat(timespec="seconds")
        fix = "ask for a later time" if now is not None else "set RECSYS_RANKING__CLOCK to a later time, or auto"
        raise BeforeData(f"{said} is before the first event the ranker knows ({start}); {fix}")
    return day


def history_as_of(records: Sequence[tuple[Any, ...]], table: Any, now: float, cut: bool,
                  uncounted: tuple[float, float] = (math.inf, math.inf)) -> tuple[History, float]:
    """A user's history from their event records, and the time to rank it at. With ``cut`` (an explicit time:
    replays, backtests) events at or after ``now`` are not part of it; on the clock a user's own newer event moves
    their "now" forward instead (a live event in a store whose clock follows its historical data).
    ``uncounted``: from when the ranker's statistics miss this user's events, in the counts and in the
    co-occurrence pairs (``ItemStats.uncounted``)."""
    from recsys.ranking.history import history_from_records

    hist = history_from_records([r[:4] for r in records], table)
    hist.uncounted_from, hist.pairs_uncounted_from = uncounted
    if cut and len(hist) and hist.ts[-1] >= now:
        return hist.prefix(int(np.searchsorted(hist.ts, now, side="left"))), now
    return on_the_clock(hist, now)


CLOCK_SKEW_DAYS = 1.0
"""How far after the clock a user's latest event may lie and still be their "now" (clients' clocks; ingestion
refuses events more than a day ahead of the wall clock)."""


def on_the_clock(hist: History, now: float) -> tuple[History, float]:
    """A history ranked on the clock ``now``, and the time to rank it at. An event up to :data:`CLOCK_SKEW_DAYS`
    after the clock moves "now" to just after it. Events further on can only be live ones in a store whose clock
    follows its historical data (``auto`` or ``data``, a pinned time): they count as made at the clock, in the
    replayed time. Moving "now" to them instead ranked the shopper months after the data ended: every trend window
    empty, their whole earlier history decayed, their one new view "trending"."""
    if not len(hist) or hist.ts[-1] < now:
        return hist, now
    if hist.ts[-1] - now <= CLOCK_SKEW_DAYS:
        return hist, float(hist.ts[-1]) + 1e-6
    at = float(np.nextafter(now, -np.inf))
    return replace(hist, ts=np.minimum(hist.ts, at), disliked_ts=np.minimum(hist.disliked_ts, at)), now


class HistoryRead(NamedTuple):
    """A user's history records as a request read them, and the oldest id of all their history events (what
    ``ItemStats.uncounted`` needs; a bounded read may not reach it)."""

    records: list[Record]
    first_id: int | None


def history_limit(served: Served, now: datetime | None) -> int | None:
    """How many of a user's latest events a request reads: the ranker's ``max_events`` on the clock; all of them
    for an explicit time (a replay cuts at it, and the latest events may all lie after it) or without a ranker."""
    ranker = served.ranker
    return None if now is not None or ranker is None else int(ranker.params.max_events)


def read_history(who: dict[str, Any], limit: int | None) -> Generator[Read, list[Any], HistoryRead]:
    """The reads of a user's history: the latest ``limit`` events (all when None), then, only when that read was
    cut, the oldest id among all of them."""
    if limit is None:
        records = user_event_records_of((yield USER_EVENTS, who))
    else:
        records = user_event_records_of((yield latest_user_events(limit), who), newest_first=True)
    if limit is None or len(records) < limit:
        return HistoryRead(records, first_event_id(records))
    ((first,),) = yield FIRST_EVENT, who
    return HistoryRead(records, None if first is None else int(first))


def first_event_id(records: Sequence[tuple[Any, ...]]) -> int | None:
    """The oldest event id among a user's records (``user_event_records``), None for none: whether the ranker's
    statistics may count any of them (:meth:`recsys.ranking.stats.ItemStats.uncounted`)."""
    return min((int(r[4]) for r in records), default=None)


def session_as_of(events: Sequence[Mapping[str, Any]], ranker: Any,
                  now: float) -> tuple[History | pd.DataFrame, float]:
    """Posted session events as a history over ``ranker``'s table, and the time to rank it at (:func:`on_the_clock`,
    as :func:`history_as_of` ranks a stored user's): the same events give the same list, posted as a session or
    stored under a user id. Without a ranker: the frame (the caller says that nothing ranks)."""
    from recsys.ranking.history import history_from_frame

    frame = session_history(events)
    if ranker is None:
        return frame, now
    return on_the_clock(history_from_frame(frame, ranker.table), now)


def session_history(events: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Posted session events (item_id, type, timestamp?, value?) as a history frame, oldest first; not stored."""
    import pandas as pd

    from recsys.store.events import parse_event

    rows = []
    for i, raw in enumerate(events):
        try:
            ev = parse_event({"user_id": "session", **raw})
        except (ValueError, TypeError) as e:
            raise ValidationFailed(f"event {i}: {e}") from None
        rows.append({"user_id": "session", "item_id": ev.item_id, "type": ev.type, "value": ev.value, "ts": ev.ts})
    hist = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "value", "ts"])
    hist = hist.sort_values("ts", kind="stable") if len(hist) else hist
    hist.attrs["uncounted_from"] = -math.inf  # never stored: the statistics count none of it (see History)
    return hist


def query_vector(query: Any, encoder_id: str, reader: Any) -> np.ndarray:
    """A query vector of the serving encoder as a (1, d) float32 row, checked against the index generation: a query
    made by another encoder (a changed preset, a dangling encoder pointer) or a non-finite one (damaged heads) is
    the deployment's fault, not the caller's, and is said as such."""
    from recsys.errors import EncoderError, IncompatibleArtifact

    q = np.asarray(query, dtype=np.float32).reshape(1, -1)
    if q.shape[1] != reader.dim or encoder_id != reader.manifest.encoder_id:
        raise IncompatibleArtifact(
            f"the encoder {encoder_id} ({q.shape[1]}-d) is not the one index generation {reader.generation_id} was "
            f"built with ({reader.manifest.encoder_id}, {reader.dim}-d); run `recsys build` for this encoder, or set "
            "RECSYS_ENCODER__PRESET back")
    if not np.isfinite(q).all() or not np.linalg.norm(q):
        raise EncoderError(f"the encoder {encoder_id} gave an empty or non-finite query vector (damaged heads?); "
                           "run `recsys encoder fit` (or `recsys build --force`)")
    return q
