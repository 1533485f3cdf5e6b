"""Served lists: every list the API answers gets an id, recorded off the request path.

``ServedLog.record`` costs a queue put: a daemon thread drains the queue in batches into ``served_lists``. A full
queue drops the list and counts it (``dropped``; ``recsys_served_lists_dropped`` in ``/metrics``) instead of making a
request wait for the database. A batch the database refuses for an outage (unreachable, busy) is tried again with a
growing backoff while new lists wait in the queue (so memory stays bounded by it); one given up after the last try is
counted in ``failed`` and in the same metric, and at close what is given up or left unwritten is said in one warning
(:mod:`recsys.feedback.writer_budget`). The log also remembers, in memory, what the recent feeds and users
were shown, so a feed's next page and ``exclude_shown_hours`` see a list still queued; once written, the store has it
and memory lets it go (:mod:`recsys.feedback.recent`). A user erased by this process (:meth:`ServedLog.erase_user`)
gets none of the lists made before written, and their rows written by other processes meanwhile are deleted too.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select

from recsys.feedback.recent import FEED_COPIES, Erasures, Recent
from recsys.feedback.recent import FEED_PAGES as FEED_PAGES  # re-exported from its old home
from recsys.feedback.writer_budget import FIRST_BACKOFF_S, RETRIES, Outage, backoff, one_try, passing, said
from recsys.store.tables import Event, Item, ServedList, User, utcnow

log = logging.getLogger(__name__)
FEED_POLL_S = 0.05
"""How often a feed whose last page is not stored yet is read again."""
ERASURE_MARGIN_S = 0.5
"""An erasure takes the lists made up to this long after the user's delete committed too: a ranking that read the
history just before the commit makes its list a moment after it. The DELETE answers later than that."""
LATE_PURGE_S = 90.0
"""When an erased user's lists are deleted from the store once more: after another process's writer has given up
retrying them (RETRIES tries and their backoff, writer_budget.retry_budget_s: 43 s on SQLite)."""
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


class ServedLog:
    """The bounded background writer of served lists over ``store`` (see the module docstring).

    ``queue_size`` lists wait at most; the thread writes up to ``batch_size`` per transaction, gathering lists for
    up to ``linger_s`` seconds after the first one so a steady trickle is not a transaction per list. ``enabled=False``
    still hands out ids and remembers feeds in memory, but writes nothing.
    """

    def __init__(self, store: Any, *, queue_size: int = 10_000, batch_size: int = 500, enabled: bool = True,
                 recent: int = 10_000, on_drop: Callable[[], Any] | None = None, linger_s: float = 0.2,
                 retries: int = RETRIES, backoff_s: float = FIRST_BACKOFF_S) -> None:
        self.store = store
        self.linger_s = linger_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        """The wait before a failed batch's first retry; it doubles with each try, up to RETRY_MAX_S."""
        self.outage = Outage(log, on_drop)
        self._closing = threading.Event()
        self._down_at_close: Exception | None = None  # a try at close failed for an outage: the rest go untried
        self._left_behind: threading.Thread | None = None  # a writer close() left: it stops after its batch
        self.on_drop = on_drop
        self.enabled = enabled
        self.batch_size = max(1, batch_size)
        self.dropped = self.written = 0
        self.recent = Recent(recent)
        self.erasures = Erasures()
        self._queue: queue.Queue[Served | str | None] = queue.Queue(maxsize=max(1, queue_size))
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._idle = threading.Condition()
        self._hurry = threading.Event()
        self._pending = 0

    @property
    def failed(self) -> int:
        """Lists given up: after the last try, refused by the database, or left unwritten at close."""
        return self.outage.failed

    # -- the request path ------------------------------------------------------------------------------------
    def record(self, served: Served) -> bool:
        """Queue ``served`` for writing; False (and counted in ``dropped``) when the queue is full. Never blocks. A list
        made for a user this process erased after it was made is neither remembered nor written."""
        if self.erasures.erased(served):
            return True
        self.recent.add(served)
        if not self.enabled:
            return True
        self._ensure_thread()
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(served)
        except queue.Full:
            self.recent.drop((served,))  # memory holds only lists still to be written (see recsys.feedback.recent)
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

    # -- erasure ---------------------------------------------------------------------------------------------
    def erase_user(self, user_id: str) -> None:
        """After ``user_id``'s delete committed: forget them, and erase every list made for them until now (plus
        ERASURE_MARGIN_S). This process never writes such a list; another worker or replica may, from its queue:
        after a few writer lingers their rows are deleted, and once more LATE_PURGE_S later (for a writer retrying
        through an outage). It blocks for the margin and the lingers (a second or so; a sync route's thread).

        Not covered: a process that dies before the later purge runs (its purge is lost; rows another process's
        writer writes after both purges stay until the user is deleted again)."""
        until = utcnow() + timedelta(seconds=ERASURE_MARGIN_S)
        self.erasures.add(user_id, until)
        self.recent.forget(user_id)
        if not self.enabled:  # nothing is written: memory was all there was
            return
        time.sleep(ERASURE_MARGIN_S + self.feed_wait_s)  # lists other processes made until then reach the store
        self.purge(user_id, until)
        timer = threading.Timer(LATE_PURGE_S, self._purge_quietly, (user_id, until))
        timer.daemon = True
        timer.start()

    def purge(self, user_id: str, until: datetime) -> int:
        """Delete the stored lists made for ``user_id`` up to ``until``; how many."""
        with self.store.session() as s:
            done = s.execute(delete(ServedList).where(ServedList.user_id == user_id, ServedList.created_at <= until))
        return int(getattr(done, "rowcount", 0) or 0)

    def _purge_quietly(self, user_id: str, until: datetime) -> None:
        try:
            self.purge(user_id, until)
        except Exception as e:  # a timer thread: nobody to raise to
            log.warning("could not delete the lists served to an erased user a second time: %s", said(e))

    # -- the writer ------------------------------------------------------------------------------------------
    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued list is written (or failed); False on timeout. For tests and shutdown."""
        self._hurry.set()
        with contextlib.suppress(queue.Full):  # wakes a writer waiting for its first list; a full queue is written
            self._queue.put_nowait(_HURRY)     # without lingering anyway
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to ``timeout_s``) and stop the thread (up to ``timeout_s`` more). Lists given up
        and not said yet (an outage) or left unwritten (:meth:`_leave`) are said in one warning, counted."""
        thread = self._thread
        if thread is None:
            return
        self.flush(timeout_s)
        self._closing.set()  # a batch waiting out an outage gets one last try, not the rest of its backoff
        self._hurry.set()
        until = time.monotonic() + timeout_s
        with contextlib.suppress(queue.Full):  # a writer stuck in a database call: left behind below
            self._queue.put(None, timeout=timeout_s)
        thread.join(max(0.0, until - time.monotonic()))
        stuck = thread.is_alive()
        self.outage.closed(*(self._leave(thread) if stuck else (0, 0)))
        self._thread = thread if stuck else None

    def _leave(self, thread: threading.Thread) -> tuple[int, int]:
        """(left unwritten, in flight) for a writer stuck in a database call: the queued lists, counted now; its batch,
        which it counts should the call return before the process ends (a slow one may take more meanwhile)."""
        left: list[Served] = []
        with contextlib.suppress(queue.Empty):
            while True:
                left += [s] if isinstance(s := self._queue.get_nowait(), Served) else []
        self.recent.drop(left)
        with self._idle:
            self._left_behind, self._pending = thread, self._pending - len(left)
            in_flight = self._pending
            self._idle.notify_all()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # for a thread not at its first list yet
        return len(left), in_flight

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._closing.clear()
                    self._down_at_close = None
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
            if stop or threading.current_thread() is self._left_behind:
                return

    def _write(self, batch: Sequence[Served]) -> None:
        """Write ``batch`` (:meth:`_tries`), or give it up, counted. Lists of a user erased since are left out; once
        written (or given up) the lists leave memory: the store has them."""
        rows = self.erasures.kept(batch)
        lost: Exception | None = None
        try:
            lost = self._tries(rows)
        finally:
            self.recent.drop(batch)  # after the commit: a reader finds each list in memory or in the store
            with self._idle:  # given up and no longer pending at once: close() counts each list once
                warn = lost is not None and self.outage.gave_up(len(rows), lost)
                self._pending -= len(batch)
                self._idle.notify_all()
        if warn and lost is not None:
            log.warning("could not record %d served lists (given up): %s", len(rows), said(lost))

    def _tries(self, rows: Sequence[Served]) -> Exception | None:
        """Write ``rows``; None once written, else why they are given up. Through an outage (each try waiting at
        most WRITE_TRY_S for SQLite's lock) they are tried again with backoff while lists arriving meanwhile wait in
        the bounded queue; rows the database refuses for another reason are given up at once. At close a batch gets
        one try, none once a try at close failed for an outage."""
        for attempt in range(self.retries + 1 if rows else 0):
            if self._closing.is_set() and self._down_at_close is not None:
                return self._down_at_close
            try:
                with one_try(), self.store.session() as s:
                    _insert(s.connection(), rows)
            except Exception as e:  # a lost list, never a failed request
                if not passing(e) or attempt == self.retries:
                    return e
                closing = self._closing.is_set()
                self.outage.failing(e, retried=not closing)
                if closing:
                    self._down_at_close = e
                    return e
                self._closing.wait(backoff(self.backoff_s, attempt))
                continue
            self.written += len(rows)
            self.outage.ended()
            return None
        return None
