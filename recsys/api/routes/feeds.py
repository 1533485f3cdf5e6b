"""Feeds without repeats: what a personal list leaves out for its cursor and for ``exclude_shown_hours``.

Both read only when asked (a cursor, or a non-zero window), so a plain request pays nothing for them. A cursor is
checked against its signature first (a made-up one is a 422 at once); a real one whose last page another process
has not written yet is looked for again for a few writer lingers, awaited on the event loop, not in a worker thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from recsys.api.schemas import RecommendRequest
from recsys.config import Settings
from recsys.errors import ValidationFailed
from recsys.feedback import Cursor, decode_cursor

log = logging.getLogger(__name__)
CURSOR_DOC = "a previous page's meta.next: the next page of that feed, without any item its pages showed"


async def left_out(request: Request, body: RecommendRequest, user_id: str | None) -> tuple[Cursor | None, list[str]]:
    """(the page asked for, the request's exclusions plus the feed's and the window's shown items); a session's
    list passes no user (and has no window)."""
    hours = body.exclude_shown_hours if user_id is not None else 0.0
    if hours is None:
        hours = request.app.state.settings.feedback.exclude_shown_hours
    if body.cursor is None and not hours:
        return None, list(body.exclude)
    served: Any = request.app.state.served
    page = decode_cursor(body.cursor, cursor_key(request)) if body.cursor is not None else None
    extra: set[str] = set()
    if page is not None:
        feed = await served.afeed_items(page.feed_id, page.offset)
        if feed is None:
            raise ValidationFailed("cursor names a feed this server does not know (expired, or not recorded); "
                                   "start again without a cursor")
        if feed[0] != user_id:  # another user's pages (or a session's) would leave out, and record, the wrong items
            whose = "a session's list" if feed[0] is None else "another user's list"
            raise ValidationFailed(f"cursor belongs to {whose}, not to this "
                                   f"{'session' if user_id is None else 'user'}'s; start again without a cursor")
        extra.update(feed[1])
    if user_id is not None and hours:
        extra.update(await run_in_threadpool(served.shown_to, user_id, hours))
    given = list(body.exclude)
    return page, given + sorted(extra - set(given))


def cursor_key(request: Request) -> bytes:
    """The key this app signs and checks cursors with (made at start-up; here for an app used without one)."""
    state = request.app.state
    key: bytes | None = getattr(state, "cursor_key", None)
    if key is None:
        key = state.cursor_key = load_cursor_key(state.settings)
    return key


def load_cursor_key(settings: Settings) -> bytes:
    """A key derived from the data directory's session secret, which every worker and replica sharing the directory
    reads (so a feed pages across them); a key of this process alone when the secret cannot be read or made."""
    from recsys.api.web.session import home_secret

    try:
        secret = home_secret(settings)
    except OSError as e:
        log.warning("feed cursors are signed with a key of this process only (another worker or replica refuses "
                    "them): the session secret cannot be read or made: %s", e)
        return os.urandom(32)
    return hmac.new(secret, b"recsys feed cursors", hashlib.sha256).digest()
