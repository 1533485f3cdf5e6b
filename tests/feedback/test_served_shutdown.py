"""The served-list writer's retry budget and its close: a try waits briefly for SQLite's write lock (so the backoff,
not the 30 s busy timeout, decides how long a batch is kept, and the erasure timers outlast it), and a close during
an outage, or with the writer stuck in a database call, says in one warning how many lists were not recorded and
counts them once."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from recsys.errors import StoreUnavailable
from recsys.feedback import Served, ServedLog, new_recommendation_id
from recsys.feedback import served as served_module
from recsys.feedback.recent import ERASURE_KEPT_S
from recsys.feedback.served import ERASURE_MARGIN_S, LATE_PURGE_S
from recsys.feedback.writer_budget import FIRST_BACKOFF_S, RETRIES, WRITE_TRY_S, backoff, retry_budget_s
from recsys.store import Store
from recsys.store.deadline import SQLITE_BUSY_MS

DOWN = StoreUnavailable("database postgresql://db/x is unreachable (connection refused)")


def _served(*items: str) -> Served:
    return Served(new_recommendation_id(), "trending", items)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == served_module.__name__ and r.levelno == logging.WARNING]


@pytest.fixture
def busy_timeouts(sqlite_store: Store) -> Iterator[list[tuple[str, int]]]:
    """(statement, the connection's busy timeout when it ran) for every statement on ``sqlite_store``."""
    seen: list[tuple[str, int]] = []

    def look(conn: Any, cursor: Any, statement: str, *_: Any) -> None:  # after deadline's own listener
        seen.append((statement, int(cursor.connection.execute("PRAGMA busy_timeout").fetchone()[0])))

    event.listen(sqlite_store.engine, "before_cursor_execute", look)
    yield seen
    event.remove(sqlite_store.engine, "before_cursor_execute", look)


def test_a_write_try_waits_briefly_for_sqlites_lock_and_other_work_keeps_its_timeout(
        sqlite_store: Store, busy_timeouts: list[tuple[str, int]]) -> None:
    log = ServedLog(sqlite_store, linger_s=0.0)
    log.record(_served("a"))
    assert log.flush(timeout_s=30) and log.written == 1
    log.close()
    with sqlite_store.session() as s:  # unbounded work after it, on the same pooled connection
        s.execute(text("SELECT 1"))
    writes = [ms for statement, ms in busy_timeouts if statement.startswith("INSERT INTO served_lists")]
    assert writes == [int(WRITE_TRY_S * 1000)]
    assert busy_timeouts[-1] == ("SELECT 1", SQLITE_BUSY_MS)


def test_a_held_sqlite_lock_fails_each_try_and_the_outage_is_said(sqlite_store: Store,
                                                                  busy_timeouts: list[tuple[str, int]],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """An import holding the write lock: each try gives up at its own short busy wait, retried, then given up."""
    caplog.set_level(logging.WARNING, served_module.__name__)
    drops: list[int] = []
    path = sqlite_store.engine.url.database
    assert path
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    log = ServedLog(sqlite_store, linger_s=0.0, retries=1, backoff_s=0.0, on_drop=lambda: drops.append(1))
    try:
        log.record(_served("a"))
        assert log.flush(timeout_s=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (log.failed, drops) == (1, [1])
    tries = [ms for statement, ms in busy_timeouts if statement.startswith("INSERT INTO served_lists")]
    assert tries == [int(WRITE_TRY_S * 1000)] * 2
    said = _warnings(caplog)
    assert len(said) == 1 and "retrying" in said[0] and "StoreBusy" in said[0]
    log.record(_served("b"))
    assert log.flush(timeout_s=30) and log.written == 1
    assert "1 lists given up" in _warnings(caplog)[-1]
    log.close()


def test_the_retry_budget_is_about_40_s_and_the_erasure_timers_outlast_it(sqlite_store: Store) -> None:
    """README: retried with backoff (0.1 s doubling to 5 s, about 40 s in all); an erased user's lists another
    process still retries are deleted once more LATE_PURGE_S later, and remembered ERASURE_KEPT_S."""
    assert [backoff(FIRST_BACKOFF_S, a) for a in range(RETRIES)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2] + [5.0] * 6
    budget = retry_budget_s()
    assert budget == pytest.approx(36.3 + (RETRIES + 1) * WRITE_TRY_S)
    assert 35 <= budget <= 45
    log = ServedLog(sqlite_store)
    assert (log.retries, log.backoff_s) == (RETRIES, FIRST_BACKOFF_S)
    kept_s = ERASURE_MARGIN_S + log.linger_s + budget  # made just after the delete, lingered, then every try
    assert kept_s < LATE_PURGE_S < ERASURE_KEPT_S


class DownStore:
    """A database that is out: every write session fails (``hang``: only once ``release`` is set); ``tried`` is set
    at the first session when it hangs, else at the second (the first failure is handled by then), and the sessions
    opened once the log began closing are counted."""

    def __init__(self, hang: bool = False) -> None:
        self.hang, self.release, self.tried = hang, threading.Event(), threading.Event()
        self.sessions = self.at_close = 0
        self.log: ServedLog | None = None

    @contextmanager
    def session(self) -> Iterator[Any]:
        self.sessions += 1
        if self.log is not None and self.log._closing.is_set():
            self.at_close += 1
        if self.sessions >= (1 if self.hang else 2):
            self.tried.set()
        if self.hang:
            self.release.wait(60)
        raise DOWN
        yield


def test_a_close_during_an_outage_says_in_one_warning_how_many_lists_were_lost(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, served_module.__name__)
    down, drops = DownStore(), []
    log = ServedLog(down, batch_size=10, linger_s=0.0, backoff_s=0.05, on_drop=lambda: drops.append(1))
    down.log = log
    for _ in range(30):
        assert log.record(_served("a", "b"))
    assert down.tried.wait(60)
    log.close(timeout_s=0.2)  # a SIGTERM while the writer waits out its backoff
    assert (log.failed, len(drops), log.written) == (30, 30, 0)
    assert down.at_close <= 1  # the batch in hand got one last try; once it failed, the rest went untried
    said = _warnings(caplog)
    assert "retrying" in said[0]
    closing = [m for m in said if m.startswith("closing")]
    assert closing == [said[-1]] and "closing with 30 served lists not recorded (30 given up" in closing[0]
    assert "StoreUnavailable" in closing[0] and not any("again" in m for m in said)


def test_a_writer_stuck_in_a_database_call_is_left_behind_and_its_lists_counted_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """A hung server: the close does not wait for the call; the lists the writer holds are said as in flight at
    close, and counted once, by the writer, when the call finally fails."""
    caplog.set_level(logging.WARNING, served_module.__name__)
    hung, drops = DownStore(hang=True), []
    log = ServedLog(hung, linger_s=0.0, on_drop=lambda: drops.append(1))
    for _ in range(5):
        log.record(_served("a"))
    thread = log._thread
    assert thread is not None and hung.tried.wait(60)
    log.close(timeout_s=0.1)
    assert thread.is_alive() and len(drops) == log.failed < 5  # the queued ones; the writer's batch is its own
    closing = [m for m in _warnings(caplog) if m.startswith("closing")]
    assert len(closing) == 1 and closing[0].startswith("closing with 5 served lists not recorded (")
    assert f"{5 - log.failed} in a database call that has not returned, lost unless it returns" in closing[0]
    hung.release.set()
    thread.join(60)
    assert not thread.is_alive() and (log.failed, len(drops), hung.sessions) == (5, 5, 1)
    assert len([m for m in _warnings(caplog) if m.startswith("closing")]) == 1
    assert log.recent.feeds == {} and log.flush(timeout_s=0)


class SlowStore:
    """A real store whose first write session waits for ``release``: a slow database, not a hung one."""

    def __init__(self, store: Store) -> None:
        self.store, self.release, self.entered = store, threading.Event(), threading.Event()

    @contextmanager
    def session(self) -> Iterator[Any]:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(60)
        with self.store.session() as s:
            yield s


def test_a_slow_writer_left_at_close_counts_its_batch_once(sqlite_store: Store) -> None:
    """The close gives up waiting for a slow call: the queued lists are counted lost at once, the batch in the call
    is written when it returns, and no list is counted both written and lost."""
    slow = SlowStore(sqlite_store)
    log = ServedLog(slow, linger_s=0.0)
    for _ in range(5):
        log.record(_served("a"))
    assert slow.entered.wait(60)
    for _ in range(3):
        log.record(_served("b"))  # queued behind the slow call
    thread = log._thread
    assert thread is not None
    log.close(timeout_s=0.05)
    lost_at_close = log.failed  # the queued ones (the writer may have taken fewer than five into its batch)
    assert log.written == 0 and 3 <= lost_at_close < 8
    slow.release.set()
    thread.join(60)
    assert not thread.is_alive() and log.failed == lost_at_close and log.written + log.failed == 8
