"""The user's part of a cached list's key (``HistoryMarks``: the count and highest id of their history events, read
as aggregates instead of every event id): it changes with every change of the history, never with an impression, and
is the same on a connection (``Store.read``) and on the event loop (``Store.fetch``), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from recsys.config import Settings
from recsys.serving.requests import HistoryMarks, ListRequest, arun_reads, run_reads
from recsys.store import Store
from recsys.store.events import delete_user, ingest_events
from recsys.store.importers import run_import
from recsys.store.queries import history_mark, request_state, user_event_records
from tests.conftest import run_async
from tests.store.fixtures import write_hm

A, B = "0108775015", "0108775044"
SERVED: Any = SimpleNamespace(reader=SimpleNamespace(generation_id="g1"), ranker_path="r1", stats_version=1)


def _keys(store: Store, marks: HistoryMarks, user: str) -> set[tuple[Any, ...]]:
    """The list key of ``user`` as both read paths make it, each through ``marks`` and through fresh marks."""
    def key(state: tuple[Any, int | None, int | None]) -> tuple[Any, ...]:
        history, version, details = state
        return ListRequest(user, 10, None, (), None, False).key(SERVED, history, (version, details), 20000.0)

    states = []
    for m in (marks, HistoryMarks(100)):
        states.append(run_reads(m.state(user), store.read))
        states.append(run_async(arun_reads(m.state(user), store.fetch)))
    return {key(s) for s in states}


def _post(store: Store, user: str, *events: tuple[str, str, str, str]) -> None:
    """Store (item, type, timestamp, client event id) events of ``user``."""
    got = ingest_events(store, [{"user_id": user, "item_id": item, "type": kind, "timestamp": ts, "event_id": cid}
                                for item, kind, ts, cid in events])
    assert {r.status for r in got} == {"stored"}


def test_every_change_of_a_history_changes_the_key_and_nothing_else_does(store: Store, settings: Settings,
                                                                         tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    marks = HistoryMarks(100)
    first = [(A, "view", "2024-05-01T10:00:00", "e1"), (B, "purchase", "2024-05-02T10:00:00", "e2")]
    keys = []

    def key() -> tuple[Any, ...]:
        both = _keys(store, marks, "u1")
        assert len(both) == 1  # the same state gives the same key, on either read path, memo or not
        keys.append(both.pop())
        return keys[-1]

    assert key() == key()  # an unknown user
    _post(store, "u1", *first)
    before = key()
    assert key() == before
    _post(store, "u1", (A, "impression", "2024-05-03T10:00:00", "i1"))  # feedback on a shown list ranks nothing
    assert key() == before
    _post(store, "u1", (A, "view", "2020-01-01T00:00:00", "e3"))
    older = key()  # an event older than all the others still comes with a higher id
    _post(store, "u1", (B, "dislike", "2024-05-04T10:00:00", "e4"))
    disliked = key()
    assert delete_user(store, "u1") == 5
    gone = key()
    _post(store, "u1", *first)  # the same events again, same client ids and times: new ids all the same
    again = key()
    assert len({before, older, disliked, gone, again}) == 5
    with store.reading() as c:
        assert history_mark(c, "u1") == (2, max(r[4] for r in user_event_records(c, "u1")))


def test_the_history_mark_is_read_again_only_when_the_users_events_moved(store: Store, settings: Settings,
                                                                         tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    _post(store, "u2", (A, "view", "2024-05-01T10:00:00", "e1"))
    marks = HistoryMarks(100)

    def reads() -> int:
        steps, n = marks.state("u2"), 0
        rows = None
        try:
            while True:
                statement, params = steps.send(rows) if n else next(steps)
                n += 1
                rows = store.read(statement, params)
        except StopIteration:
            return n

    assert reads() == 2 and reads() == 1  # a cached hit reads one aggregate of the user's events' index
    _post(store, "u2", (B, "impression", "2024-05-02T10:00:00", "i1"))
    with store.reading() as c:
        moved, *_ = request_state(c, "u2")
    assert moved[0] == 2 and reads() == 2 and reads() == 1  # all the events moved: the history is counted again
    assert run_reads(marks.state("nobody"), store.read)[0] == (0, None)
