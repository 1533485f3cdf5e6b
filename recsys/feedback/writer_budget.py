"""How long the served-list writer keeps a batch through a database outage, and what it says of the lists it gives
up (see :class:`recsys.feedback.ServedLog`).

A try waits at most WRITE_TRY_S for SQLite's write lock (an import holds it until it commits), not the 30 s busy
timeout of offline work: the backoff between tries decides how long a batch is kept (:func:`retry_budget_s`, about
40 s), and the outage's warning comes at its first failed try. On PostgreSQL a try is not bounded here: an unreachable
server fails it at once (a hung one holds it until the driver gives up).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from recsys.errors import StoreUnavailable
from recsys.store.deadline import sqlite_busy

RETRIES = 12
"""Tries after a batch's first write fails for an outage, before its lists are given up."""
RETRY_MAX_S = 5.0
"""The longest wait between two tries of a batch."""
FIRST_BACKOFF_S = 0.1
"""The wait before a failed batch's first retry; it doubles with each try, up to RETRY_MAX_S."""
WRITE_TRY_S = 0.5
"""How long one try waits for SQLite's write lock before it fails (a batch's write itself takes milliseconds)."""


def backoff(first_s: float, attempt: int) -> float:
    """The wait after try ``attempt`` (0-based) failed."""
    return min(RETRY_MAX_S, first_s * 2 ** attempt)


def retry_budget_s(retries: int = RETRIES, first_s: float = FIRST_BACKOFF_S, try_s: float = WRITE_TRY_S) -> float:
    """The longest a batch is kept through an outage on SQLite before it is given up: every try's wait for the lock
    and the backoff between them (42.8 s by default). The erasure timers are sized on it."""
    return (retries + 1) * try_s + sum(backoff(first_s, a) for a in range(retries))


@contextlib.contextmanager
def one_try() -> Iterator[None]:
    """A write try of the writer: on SQLite it waits WRITE_TRY_S at most for the write lock."""
    with sqlite_busy(WRITE_TRY_S):
        yield


def passing(e: Exception) -> bool:
    """An outage a retry may outlive (unreachable, busy, a dropped connection), as opposed to rows refused."""
    return isinstance(e, StoreUnavailable | OperationalError | InterfaceError)


def said(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:200]}"


class Outage:
    """What the writer says of lists it could not write: one warning when an outage begins and one when it ends
    (with the count given up meanwhile), rows refused for another reason once a minute, and at close one line for what
    an outage not over yet gave up and what the writer could not get to (that outage's end never comes)."""

    def __init__(self, log: logging.Logger, on_drop: Callable[[], Any] | None = None) -> None:
        self.log, self.on_drop = log, on_drop
        self.failed = 0
        """Lists given up: after the last try, refused, or left unwritten at close."""
        self.began: float | None = None
        """When the writes began failing; None while they succeed."""
        self.lost = 0
        """Lists given up since the outage began: said when it ends, or at close."""
        self.error = ""
        self._last_warning = 0.0
        self._lock = threading.Lock()

    def failing(self, e: Exception, *, retried: bool = True) -> None:
        """A try failed for an outage: the first failure of an outage warns, when its batch is to be tried again
        (at close, :meth:`closed` says it)."""
        with self._lock:
            self.error = said(e)
            if self.began is not None:
                return
            self.began = time.monotonic()
        if retried:
            self.log.warning("could not record served lists, retrying with backoff (new lists wait in the queue; a "
                             "full queue drops them): %s", said(e))

    def ended(self) -> None:
        """A batch was written: an outage under way is over."""
        with self._lock:
            if self.began is None:
                return
            began, lost, self.began, self.lost = self.began, self.lost, None, 0
        self.log.warning("recording served lists again after %.0f s; %d lists given up meanwhile (counted in "
                         "recsys_served_lists_dropped)", time.monotonic() - began, lost)

    def gave_up(self, n: int, e: Exception) -> bool:
        """Count ``n`` lists given up for ``e``; whether to warn now (not through an outage: said when it ends; at
        most once a minute: a database that refuses every batch)."""
        self._count(n)
        with self._lock:
            self.error = said(e)
            if self.began is not None:
                self.lost += n
                return False
            now = time.monotonic()
            if now - self._last_warning <= 60:
                return False
            self._last_warning = now
            return True

    def closed(self, left: int, in_flight: int = 0) -> None:
        """At close: ``left`` lists the writer could not get to are counted, and with those an outage not over yet
        gave up and ``in_flight`` lists in a database call that has not returned (the writer counts them, should it
        return before the process ends), said in one warning."""
        self._count(left)
        with self._lock:
            began, lost, self.began, self.lost = self.began, self.lost, None, 0
        if lost + left + in_flight == 0:
            return
        parts = ([f"{lost} given up through a database outage of {time.monotonic() - began:.0f} s"]
                 if began is not None and lost else []) + ([f"{left} left unwritten"] if left else []) + (
            [f"{in_flight} in a database call that has not returned, lost unless it returns before the process ends"]
            if in_flight else [])
        self.log.warning("closing with %d served lists not recorded (%s; counted in recsys_served_lists_dropped): "
                         "events naming their ids are not attributed and their feeds' cursors are refused%s",
                         lost + left + in_flight, ", ".join(parts), f"; last error: {self.error}" if self.error else "")

    def _count(self, n: int) -> None:
        with self._lock:
            self.failed += n
        if self.on_drop is not None:
            for _ in range(n):
                self.on_drop()
