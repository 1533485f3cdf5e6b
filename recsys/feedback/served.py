"""Served lists: every list the API answers gets an id, recorded off the request path.

``ServedLog.record`` costs a queue put: a daemon thread drains the queue in batches into ``served_lists``. A full
queue drops the list and counts it (``dropped``; ``recsys_served_lists_dropped`` in ``/metrics``) instead of making a
request wait for the database. A batch the database refuses for an outage (unreachable, busy) is tried again with a
growing backoff while new lists wait in the queue (so memory stays bounded by it); one given up after the last try is
counted in ``failed`` and in the same metric. The log also remembers, in memory, what the recent feeds and users
were shown, so a feed's next page and ``exclude_shown_hours`` see a list still queued (and a list that was dropped).
A cursor sent again adds a copy of its page, each recorded (attribution needs every list), but a feed is read with the
FEED_COPIES latest copies of a page only: replayed without end, a cursor would make every request slower and bigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.exc import InterfaceError, OperationalError

from recsys.errors import StoreUnavailable
from recsys.store.tables import Event, Item, ServedList, User, utcnow

log = logging.getLogger(__name__)
RETRIES = 12
"""Tries after a batch's first write fails for an outage, before its lists are given up (~40 s of backoff)."""
RETRY_MAX_S = 5.0
"""The longest wait between two tries of a batch."""
FEED_POLL_S = 0.05
"""How often a feed whose last page is not stored yet is read again."""
FEED_COPIES = 3  # the latest copies of a page (its cursor sent again) that the feed's next page leaves out
FEED_PAGES = 100  # the pages (offsets) of a feed kept in memory: the oldest go first (the store has them once written)
_HURRY = "flush"
"""Put on the queue by :meth:`ServedLog.flush`: the writer stops lingering and writes what it has."""


def new_recommendation_id() -> str:
    """A fresh list id: 32 random hex digits (128 bits, as a random UUID; a quarter of ``uuid4().hex``'s cost)."""
    return os.urandom(16).hex()


@dataclass(slots=True)
class Served:
    """One answered list: its id, where it came from and the items it showed, best first."""

    id: str
    source: str
    item_ids: tuple[str, ...]
    user_id: str | None = None
    feed_id: str | None = None
    offset: int = 0
    index_generation: str | None = None
    ranker_version: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    paged: bool = False
    """A feed's page (it has a cursor): remembered in memory for the next page. Not stored."""
    experiment: str | None = None
    variant: str | None = None

    def values(self, sqlite: bool) -> tuple[Any, ...]:
        """The row as :func:`served_rows_insert` binds it: JSON as text, and on SQLite the time in SQLAlchemy's
        own storage format (so ORM reads parse it back)."""
        ts: Any = self.created_at.isoformat(sep=" ", timespec="microseconds") if sqlite else self.created_at
        return (self.id, self.source[:32], self.user_id, self.feed_id, self.offset, json.dumps(list(self.item_ids)),
                len(self.item_ids), self.index_generation, self.ranker_version, ts, self.experiment, self.variant)

    def row(self) -> dict[str, Any]:
        return {**dict(zip(_COLUMNS, self.values(False), strict=True)), "item_ids": list(self.item_ids)}


SERVED_INSERT = insert(ServedList)
"""The portable statement, a Core executemany: for dialects :func:`served_rows_insert` does not know."""
SERVED_ROWS_PER_STATEMENT = 400
"""4,800 parameters a statement: under SQLite's (32,766) and PostgreSQL's (65,535) limits at any batch size."""
_COLUMNS = ("id", "source", "user_id", "feed_id", "offset", "item_ids", "size", "index_generation",
            "ranker_version", "created_at", "experiment", "variant")
_MARKS = {"sqlite": "?", "postgresql": "%s"}
"""The parameter marker of each driver :func:`served_rows_insert` writes for; other dialects take SERVED_INSERT."""


@functools.lru_cache(maxsize=64)
def served_rows_insert(dialect: Any, n: int) -> str:
    """One INSERT of ``n`` rows in the driver's own parameter style (a dialect of ``_MARKS``).

    One statement per batch, not an executemany: the driver releases the GIL around every row's step, and each
    re-acquisition by this thread forced a switch away from the request loop (served-list recording cost ~15% of
    cached throughput that way; its CPU was ~3%)."""
    mark = _MARKS[dialect.name]
    quote = dialect.identifier_preparer.quote
    cells = [f"CAST({mark} AS JSON)" if c == "item_ids" and dialect.name == "postgresql" else mark for c in _COLUMNS]
    row = "(" + ", ".join(cells) + ")"
    return (f"INSERT INTO {quote(ServedList.__tablename__)} ({', '.join(quote(c) for c in _COLUMNS)}) VALUES "
            + ", ".join([row] * n))


def _insert(conn: Any, batch: Sequence[Served]) -> None:
    """Write ``batch`` on ``conn``: one INSERT per SERVED_ROWS_PER_STATEMENT rows, else the portable executemany."""
    name = conn.dialect.name
    if name not in _MARKS:
        conn.execute(SERVED_INSERT, [b.row() for b in batch])
        return
    for i in range(0, len(batch), SERVED_ROWS_PER_STATEMENT):
        part = batch[i:i + SERVED_ROWS_PER_STATEMENT]
        conn.exec_driver_sql(served_rows_insert(conn.dialect, len(part)),
                             tuple(v for b in part for v in b.values(name == "sqlite")))


class _Recent:
    """What recent feeds and users were shown, in memory (bounded, least recently used dropped)."""

    def __init__(self, size: int) -> None:
        self.size = size
        # feed: (its user, offset: the latest copies of that page this process served; other replicas' are stored)
        self.feeds: OrderedDict[str, tuple[str | None, dict[int, deque[tuple[str, ...]]]]] = OrderedDict()
        self.users: OrderedDict[str, deque[tuple[datetime, tuple[str, ...]]]] = OrderedDict()
        self.lock = threading.Lock()

    def add(self, s: Served) -> None:
        if s.user_id is None and not s.paged:  # search, similar items...: never paged nor left out later
            return
        with self.lock:
            if s.paged:
                feed = s.feed_id or s.id
                pages = self.feeds.setdefault(feed, (s.user_id, {}))[1]
                pages.setdefault(s.offset, deque(maxlen=FEED_COPIES)).append(tuple(s.item_ids))
                if len(pages) > FEED_PAGES:
                    del pages[next(iter(pages))]
                self.feeds.move_to_end(feed)
                while len(self.feeds) > self.size:
                    self.feeds.popitem(last=False)
            if s.user_id is None:
                return
            shown = self.users.setdefault(s.user_id, deque(maxlen=64))
            shown.append((s.created_at, s.item_ids))
            self.users.move_to_end(s.user_id)
            while len(self.users) > self.size:
                self.users.popitem(last=False)

    def feed(self, feed_id: str) -> tuple[str | None, list[tuple[int, tuple[str, ...]]]] | None:
        with self.lock:
            got = self.feeds.get(feed_id)
            return None if got is None else (got[0], [(o, ids) for o, copies in got[1].items() for ids in copies])

    def forget(self, user_id: str) -> None:
        """Everything remembered of ``user_id``: what they were shown and their feeds (their cursors stop)."""
        with self.lock:
            self.users.pop(user_id, None)
            for feed in [f for f, (who, _) in self.feeds.items() if who == user_id]:
                del self.feeds[feed]

    def user(self, user_id: str, since: datetime) -> set[str]:
        with self.lock:
            return {i for ts, items in self.users.get(user_id, ()) if ts >= since for i in items}


class ServedLog:
    """The bounded background writer of served lists over ``store`` (see the module docstring).

    ``queue_size`` lists wait at most; the thread writes up to ``batch_size`` per transaction, gathering lists for
    up to ``linger_s`` seconds after the first one so a steady trickle is not a transaction per list. ``enabled=False``
    still hands out ids and remembers feeds in memory, but writes nothing.
    """

    def __init__(self, store: Any, *, queue_size: int = 10_000, batch_size: int = 500, enabled: bool = True,
                 recent: int = 10_000, on_drop: Callable[[], Any] | None = None, linger_s: float = 0.2,
                 retries: int = RETRIES, backoff_s: float = 0.1) -> None:
        self.store = store
        self.linger_s = linger_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        """The wait before a failed batch's first retry; it doubles with each try, up to RETRY_MAX_S."""
        self._outage: tuple[float, int] | None = None
        """(when the writes began failing, lists given up since): set while the database is out."""
        self._last_warning = 0.0
        self._closing = threading.Event()
        self.on_drop = on_drop
        self.enabled = enabled
        self.batch_size = max(1, batch_size)
        self.dropped = self.written = self.failed = 0
        self.recent = _Recent(recent)
        self._queue: queue.Queue[Served | str | None] = queue.Queue(maxsize=max(1, queue_size))
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._idle = threading.Condition()
        self._hurry = threading.Event()
        self._pending = 0

    # -- the request path ------------------------------------------------------------------------------------
    def record(self, served: Served) -> bool:
        """Queue ``served`` for writing; False (and counted in ``dropped``) when the queue is full. Never blocks."""
        self.recent.add(served)
        if not self.enabled:
            return True
        self._ensure_thread()
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(served)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()
            return False
        return True

    # -- reads -----------------------------------------------------------------------------------------------
    def feed_items(self, feed_id: str, shown: int = 0) -> tuple[str | None, list[str]] | None:
        """(the user the feed ``feed_id`` was served to, None for a session; the items of its pages before position
        ``shown``, the cursor's offset, or all for 0: a cursor sent again gets its page anew, not the page after),
        from the store (other replicas' and workers' pages) and this process's memory (pages not written yet); None
        for an unknown feed. Until ``shown`` items are found, the feed is looked for again for a few writer lingers:
        the page before may have been served a moment ago by another process and not be written yet."""
        deadline = time.monotonic() + self.feed_wait_s
        while True:
            found = self._feed_now(feed_id, shown)
            if (found is not None and len(found[1]) >= shown) or time.monotonic() >= deadline:
                return found
            time.sleep(FEED_POLL_S)

    async def afeed_items(self, feed_id: str, shown: int = 0) -> tuple[str | None, list[str]] | None:
        """:meth:`feed_items` for the event loop: each read in a worker thread, the waits between them awaited, so
        a feed looked for again holds no thread (of the server's few) while it waits."""
        deadline = time.monotonic() + self.feed_wait_s
        while True:
            found = await asyncio.to_thread(self._feed_now, feed_id, shown)
            if (found is not None and len(found[1]) >= shown) or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(FEED_POLL_S)

    @property
    def feed_wait_s(self) -> float:
        """How long a feed shorter than its cursor is looked for: a few writer lingers."""
        return 3 * self.linger_s + 0.2

    def _feed_now(self, feed_id: str, before: int = 0) -> tuple[str | None, list[str]] | None:
        got = self.recent.feed(feed_id)
        # each offset's FEED_COPIES latest rows (found by the id and feed_id indexes) are chosen before any is decoded
        rank = func.row_number().over(partition_by=ServedList.offset,
                                      order_by=(ServedList.created_at.desc(), ServedList.id.desc()))
        ranked = (select(ServedList.id, rank.label("n"))
                  .where(or_(ServedList.id == feed_id, ServedList.feed_id == feed_id)).subquery())
        with self.store.session() as s:
            rows = s.execute(select(ServedList.offset, ServedList.user_id, ServedList.item_ids)
                             .where(ServedList.id.in_(select(ranked.c.id).where(ranked.c.n <= FEED_COPIES)))).all()
        if not rows and got is None:
            return None
        # pages this process served that its writer has not stored yet count too (a page in both counts once)
        pages = [(o, tuple(ids or ())) for o, _, ids in rows] + (got[1] if got else [])
        user = rows[0][1] if rows else got[0] if got else None
        kept = sorted(p for p in pages if not before or p[0] < before)
        return user, list(dict.fromkeys(i for _, ids in kept for i in ids))

    def shown_to(self, user_id: str, hours: float, *, now: datetime | None = None) -> set[str]:
        """Items shown to ``user_id`` within the last ``hours``: in lists served to them (memory and store) and in
        the impressions they posted. An impression counts from the earlier of its own time and when it was stored,
        so one a client dated ahead (ingestion takes up to a day) leaves its item out for the window, no longer."""
        since = (now or utcnow()) - timedelta(hours=hours)
        shown = self.recent.user(user_id, since)
        with self.store.session() as s:
            for (ids,) in s.execute(select(ServedList.item_ids)
                                    .where(ServedList.user_id == user_id, ServedList.created_at >= since)):
                shown.update(ids or ())
            shown.update(s.scalars(select(Item.external_id).join(Event, Event.item_id == Item.id)
                                   .join(User, User.id == Event.user_id)
                                   .where(User.external_id == user_id, Event.type == "impression",
                                          Event.ts >= since, Event.created_at >= since)))
        return shown

    # -- the writer ------------------------------------------------------------------------------------------
    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued list is written (or failed); False on timeout. For tests and shutdown."""
        self._hurry.set()
        with contextlib.suppress(queue.Full):  # wakes a writer waiting for its first list; a full queue is written
            self._queue.put_nowait(_HURRY)     # without lingering anyway
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to ``timeout_s``) and stop the thread."""
        thread = self._thread
        if thread is None:
            return
        self.flush(timeout_s)
        self._closing.set()  # a batch waiting out an outage gets one last try, not the rest of its backoff
        try:
            self._queue.put(None, timeout=timeout_s)
            self._hurry.set()
        except queue.Full:
            return
        thread.join(timeout_s)
        self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._closing.clear()
                    self._thread = threading.Thread(target=self._run, name="recsys-served-lists", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [] if isinstance(first, str) else [first]
            # Gather lists for linger_s by sleeping, then drain: taking them one timed get() at a time cost this
            # thread ~40 us of CPU (and the GIL) per list under load. A full batch waiting, flush() and close() cut
            # the sleep short.
            if batch and self._queue.qsize() < self.batch_size - 1:
                self._hurry.wait(self.linger_s)
            stop = False
            while len(batch) < self.batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if not isinstance(nxt, str):  # a flush() marker: its sleep is already cut short
                    batch.append(nxt)
            if self._queue.empty():
                self._hurry.clear()
            if batch:
                self._write(batch)
            if stop:
                return

    def _write(self, batch: Sequence[Served]) -> None:
        """Write ``batch``; through an outage, try again with backoff (lists arriving meanwhile wait in the bounded
        queue), then give it up, counted. Rows the database refuses for another reason are given up at once."""
        try:
            for attempt in range(self.retries + 1):
                try:
                    with self.store.session() as s:
                        _insert(s.connection(), batch)
                except Exception as e:  # a lost list, never a failed request
                    if not _passing(e) or attempt == self.retries or self._closing.is_set():
                        self._give_up(len(batch), e)
                        return
                    self._outage_began(e)
                    self._closing.wait(min(RETRY_MAX_S, self.backoff_s * 2 ** attempt))
                    continue
                self.written += len(batch)
                self._outage_ended()
                return
        finally:
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def _outage_began(self, e: Exception) -> None:
        if self._outage is None:  # once per outage, not per batch or try
            self._outage = (time.monotonic(), 0)
            log.warning("could not record served lists, retrying with backoff (new lists wait in the queue; a "
                        "full queue drops them): %s", _said(e))

    def _outage_ended(self) -> None:
        if self._outage is not None:
            began, lost = self._outage
            self._outage = None
            log.warning("recording served lists again after %.0f s; %d lists given up meanwhile (counted in "
                        "recsys_served_lists_dropped)", time.monotonic() - began, lost)

    def _give_up(self, n: int, e: Exception) -> None:
        self.failed += n
        if self.on_drop is not None:
            for _ in range(n):
                self.on_drop()
        if self._outage is not None:
            self._outage = (self._outage[0], self._outage[1] + n)  # said when the outage ends
            return
        now = time.monotonic()
        if now - self._last_warning > 60:  # a database that refuses every batch says so once a minute
            self._last_warning = now
            log.warning("could not record %d served lists (given up): %s", n, _said(e))


def _passing(e: Exception) -> bool:
    """An outage a retry may outlive (unreachable, busy, a dropped connection), as opposed to rows refused."""
    return isinstance(e, StoreUnavailable | OperationalError | InterfaceError)


def _said(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:200]}"
