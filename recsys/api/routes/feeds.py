"""Feeds without repeats: what a personal list leaves out for its cursor and for ``exclude_shown_hours``.

Both read only when asked (a cursor, or a non-zero window), so a plain request pays nothing for them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from recsys.api.schemas import RecommendRequest
from recsys.errors import ValidationFailed
from recsys.feedback import Cursor, decode_cursor

CURSOR_DOC = "a previous page's meta.next: the next page of that feed, without any item its pages showed"


async def left_out(request: Request, body: RecommendRequest, user_id: str) -> tuple[Cursor | None, list[str]]:
    """(the page asked for, the request's exclusions plus the feed's and the window's shown items)."""
    hours = body.exclude_shown_hours
    if hours is None:
        hours = request.app.state.settings.feedback.exclude_shown_hours
    if body.cursor is None and not hours:
        return None, list(body.exclude)
    return await run_in_threadpool(feed_exclusions, request, body, user_id, hours)


def feed_exclusions(request: Request, body: RecommendRequest, user_id: str | None,
                    hours: float = 0.0) -> tuple[Cursor | None, list[str]]:
    """:func:`left_out` in a worker thread (it reads the store); sessions pass no user and no window."""
    log: Any = request.app.state.served
    page = decode_cursor(body.cursor) if body.cursor is not None else None
    extra: set[str] = set()
    if page is not None:
        feed = log.feed_items(page.feed_id, page.offset)
        if feed is None:
            raise ValidationFailed("cursor names a feed this server does not know (expired, or not recorded); "
                                   "start again without a cursor")
        if feed[0] != user_id:  # another user's pages (or a session's) would leave out, and record, the wrong items
            whose = "a session's list" if feed[0] is None else "another user's list"
            raise ValidationFailed(f"cursor belongs to {whose}, not to this "
                                   f"{'session' if user_id is None else 'user'}'s; start again without a cursor")
        extra.update(feed[1])
    if user_id is not None and hours:
        extra.update(log.shown_to(user_id, hours))
    given = list(body.exclude)
    return page, given + sorted(extra - set(given))
