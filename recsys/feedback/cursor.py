"""Feed cursors: ``meta.next`` of a page, passed back as ``cursor=`` for the next one.

A cursor names the feed (the first page's recommendation id) and how many items its pages showed so far. The next
page is ranked anew with every item the feed already showed left out, so it never repeats an earlier page even when
the user's history changed in between.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from recsys.errors import ValidationFailed

_FEED = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Cursor:
    feed_id: str
    offset: int

    def encode(self) -> str:
        raw = f"{self.feed_id}:{self.offset}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor in ``text``; ValidationFailed for anything that is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        feed_id, _, offset = raw.partition(":")
        n = int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("cursor is not a cursor this API gave (meta.next)") from None
    if not _FEED.match(feed_id) or not 0 < n <= 1_000_000:
        raise ValidationFailed("cursor is not a cursor this API gave (meta.next)")
    return Cursor(feed_id, n)
