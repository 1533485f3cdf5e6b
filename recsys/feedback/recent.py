"""What this process remembers of the lists it served: the pages of recent feeds and what recent users were shown,
and the users it erased lately (see :class:`recsys.feedback.ServedLog`).

With recording on, memory holds only the lists this process's writer has not written yet: once written, the store
has them (other workers and replicas read them there), and a list is dropped from memory, so a user deleted from the
store is gone for every process. With recording off, memory is all there is and keeps what it was shown.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recsys.feedback.served import Served

FEED_COPIES = 3  # the latest copies of a page (its cursor sent again) that the feed's next page leaves out
FEED_PAGES = 100  # the pages (offsets) of a feed kept in memory: the oldest go first (the store has them once written)
SHOWN_PER_USER = 64  # the latest lists of a user kept in memory
ERASURES_KEPT = 10_000
"""The latest erasures remembered (the oldest go first): their users' lists made before are never written."""
ERASURE_KEPT_S = 600.0
"""How long an erasure is remembered: longer than a list waits in the writer (its linger, and a batch's retries through
an outage: writer_budget.retry_budget_s, 43 s on SQLite)."""


class Recent:
    """What recent feeds and users were shown, in memory (bounded, least recently used dropped); each entry carries
    its list's id so the writer can drop it once written."""

    def __init__(self, size: int) -> None:
        self.size = size
        # feed: (its user, offset: the latest copies (list id, items) of that page this process holds)
        self.feeds: OrderedDict[str, tuple[str | None, dict[int, deque[tuple[str, tuple[str, ...]]]]]] = OrderedDict()
        self.users: OrderedDict[str, deque[tuple[str, datetime, tuple[str, ...]]]] = OrderedDict()
        self.lock = threading.Lock()

    def add(self, s: Served) -> None:
        if s.user_id is None and not s.paged:  # search, similar items...: never paged nor left out later
            return
        with self.lock:
            if s.paged:
                feed = s.feed_id or s.id
                pages = self.feeds.setdefault(feed, (s.user_id, {}))[1]
                pages.setdefault(s.offset, deque(maxlen=FEED_COPIES)).append((s.id, tuple(s.item_ids)))
                if len(pages) > FEED_PAGES:
                    del pages[next(iter(pages))]
                self.feeds.move_to_end(feed)
                while len(self.feeds) > self.size:
                    self.feeds.popitem(last=False)
            if s.user_id is None:
                return
            shown = self.users.setdefault(s.user_id, deque(maxlen=SHOWN_PER_USER))
            shown.append((s.id, s.created_at, s.item_ids))
            self.users.move_to_end(s.user_id)
            while len(self.users) > self.size:
                self.users.popitem(last=False)

    def drop(self, lists: Sequence[Served]) -> None:
        """Forget ``lists`` (written to the store, or never to be): a feed or user left with nothing goes."""
        ids = {s.id for s in lists}
        users = {s.user_id for s in lists if s.user_id is not None}
        feeds = {s.feed_id or s.id for s in lists if s.paged}
        with self.lock:
            for user in users:
                if (shown := self.users.get(user)) is not None:
                    kept = [e for e in shown if e[0] not in ids]
                    if kept:
                        self.users[user] = deque(kept, maxlen=SHOWN_PER_USER)
                    else:
                        del self.users[user]
            for feed in feeds:
                if (got := self.feeds.get(feed)) is None:
                    continue
                pages = got[1]
                for offset in list(pages):
                    copies = [c for c in pages[offset] if c[0] not in ids]
                    if copies:
                        pages[offset] = deque(copies, maxlen=FEED_COPIES)
                    else:
                        del pages[offset]
                if not pages:
                    del self.feeds[feed]

    def feed(self, feed_id: str) -> tuple[str | None, list[tuple[int, tuple[str, ...]]]] | None:
        with self.lock:
            got = self.feeds.get(feed_id)
            return None if got is None else (got[0], [(o, ids) for o, copies in got[1].items() for _, ids in copies])

    def forget(self, user_id: str) -> None:
        """Everything remembered of ``user_id``: what they were shown and their feeds (their cursors stop)."""
        with self.lock:
            self.users.pop(user_id, None)
            for feed in [f for f, (who, _) in self.feeds.items() if who == user_id]:
                del self.feeds[feed]

    def user(self, user_id: str, since: datetime) -> set[str]:
        with self.lock:
            return {i for _, ts, items in self.users.get(user_id, ()) if ts >= since for i in items}


class Erasures:
    """Users this process erased lately: user id -> the time up to which their lists are erased (bounded in number
    and in age, see ERASURES_KEPT and ERASURE_KEPT_S)."""

    def __init__(self, size: int = ERASURES_KEPT, keep_s: float = ERASURE_KEPT_S) -> None:
        self.size, self.keep_s = size, keep_s
        self._until: OrderedDict[str, tuple[datetime, float]] = OrderedDict()  # (erased up to, monotonic expiry)
        self.lock = threading.Lock()

    def add(self, user_id: str, until: datetime) -> None:
        with self.lock:
            self._until.pop(user_id, None)
            self._until[user_id] = (until, time.monotonic() + self.keep_s)
            while len(self._until) > self.size:
                self._until.popitem(last=False)

    def erased(self, s: Served) -> bool:
        """Whether ``s`` was made for a user erased after it (a list of the erased person, never to be written)."""
        if not self._until or s.user_id is None:  # the common case, without the lock
            return False
        with self.lock:
            got = self._until.get(s.user_id)
            if got is None:
                return False
            if got[1] < time.monotonic():
                del self._until[s.user_id]
                return False
            return s.created_at <= got[0]

    def kept(self, lists: Iterable[Served]) -> list[Served]:
        return [s for s in lists if not self.erased(s)]
