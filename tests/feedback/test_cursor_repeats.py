"""A feed cursor sent again and again (a retrying client): every copy of its page is recorded, but what a feed's read
takes stays bounded (each offset's latest FEED_COPIES copies, in the store and in memory), while the next page still
leaves out the latest copies and a copy sent again leaves out none of them (SQLite, and PostgreSQL when
RECSYS_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from recsys.feedback import Served, ServedLog, new_recommendation_id
from recsys.feedback.served import FEED_COPIES, FEED_PAGES
from recsys.store import Store
from recsys.store.tables import ServedList, utcnow

REPEATS = 40


def _page(items: tuple[str, ...], *, feed: str | None = None, offset: int = 0, at: int = 0) -> Served:
    """A feed's page served ``at`` ms after a fixed start (copies of one page get distinct, ordered times)."""
    return Served(new_recommendation_id(), "recommend", items, "u1", feed_id=feed, offset=offset, paged=True,
                  created_at=utcnow().replace(microsecond=0) - timedelta(hours=1) + timedelta(milliseconds=at))


def _replayed(log: ServedLog) -> tuple[str, list[tuple[str, ...]]]:
    """Page 1 (a, b), then its cursor (offset 2) sent REPEATS times, each copy ranked anew into other items."""
    first = _page(("a", "b"))
    log.record(first)
    copies = [(f"x{n}", f"y{n}") for n in range(REPEATS)]
    for n, items in enumerate(copies):
        log.record(_page(items, feed=first.id, offset=2, at=n + 1))
    return first.id, copies


def _latest(copies: list[tuple[str, ...]]) -> list[str]:
    return [i for items in copies[-FEED_COPIES:] for i in items]


def test_a_replayed_cursor_reads_only_its_latest_copies_from_the_store(store: Store) -> None:
    writer = ServedLog(store)
    feed, copies = _replayed(writer)
    assert writer.flush(timeout_s=30)
    with store.session() as s:  # every copy is still recorded: attribution needs each list
        assert s.scalar(select(func.count()).select_from(ServedList)) == REPEATS + 1
    reader = ServedLog(store)  # another replica: nothing in memory, the store alone
    got = reader.feed_items(feed)
    assert got is not None and got[0] == "u1"
    assert got[1] == ["a", "b", *_latest(copies)]  # the next page leaves out the latest copies, not all 40
    assert reader.feed_items(feed, 2) == ("u1", ["a", "b"])  # the cursor sent again: none of its copies
    # this process's memory and the store together: still the latest copies only, each counted once
    assert writer.feed_items(feed) == ("u1", ["a", "b", *_latest(copies)])
    writer.close()
    reader.close()


def test_a_replayed_cursor_is_bounded_in_memory(sqlite_store: Store) -> None:
    log = ServedLog(sqlite_store, enabled=False)  # memory alone: what a feed holds is what its next page reads
    feed, copies = _replayed(log)
    kept = log.recent.feed(feed)
    assert kept is not None and len(kept[1]) == 1 + FEED_COPIES
    assert log.feed_items(feed) == ("u1", ["a", "b", *_latest(copies)])
    assert log.feed_items(feed, 2) == ("u1", ["a", "b"])


def test_a_long_feed_keeps_its_latest_pages_in_memory(sqlite_store: Store) -> None:
    log = ServedLog(sqlite_store, enabled=False)
    first = _page(("p0",))
    log.record(first)
    for n in range(1, FEED_PAGES + 20):
        log.record(_page((f"p{n}",), feed=first.id, offset=n, at=n))
    kept: Any = log.recent.feed(first.id)
    assert len(kept[1]) == FEED_PAGES and kept[1][-1] == (FEED_PAGES + 19, (f"p{FEED_PAGES + 19}",))
