"""Feed cursors: ``meta.next`` of a page, passed back as ``cursor=`` for the next one.

A cursor names the feed (the first page's recommendation id) and how many items its pages showed so far. The next
page is ranked anew with every item the feed already showed left out, so it never repeats an earlier page even when
the user's history changed in between.

A cursor is signed (HMAC-SHA256 with the server's key, shared by the workers and replicas that share the data
directory): one the server did not issue, or whose offset was changed, is refused at once, before any store read or
wait for a page another process may not have written yet.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from recsys.errors import ValidationFailed

_FEED = re.compile(r"^[0-9a-f]{32}$")
_MAC = re.compile(r"^[0-9a-f]{32}$")
_UNSIGNED_FORM = re.compile(r"^[0-9a-f]{32}:[0-9]{1,7}$")  # feed:offset, as releases before 2026-12-06 gave
_NOT_OURS = "cursor is not a cursor this API gave (meta.next); start again without a cursor"
_UNSIGNED = ("cursor is an unsigned one from a recsys release before this server's upgrade (cursors are signed since "
             "2026-12-06); start again without a cursor")
_OTHER_KEY = ("cursor is not a cursor this API gave (meta.next), or one a server with another data directory gave "
              "(replicas and workers must share RECSYS_HOME, whose secrets/session.key signs cursors); start again "
              "without a cursor")


@dataclass(frozen=True)
class Cursor:
    feed_id: str
    offset: int

    def encode(self, key: bytes) -> str:
        """The cursor as ``meta.next`` carries it: base64url of ``feed:offset:mac``."""
        body = f"{self.feed_id}:{self.offset}"
        raw = f"{body}:{_mac(key, body)}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, key: bytes) -> Cursor:
    """The cursor in ``text``; ValidationFailed for anything that is not one this server's ``key`` signed."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(_NOT_OURS) from None
    if _UNSIGNED_FORM.match(raw):  # a client paging across an upgrade, not a forgery to flag
        raise ValidationFailed(_UNSIGNED)
    body, _, mac = raw.rpartition(":")
    feed_id, _, offset = body.partition(":")
    try:
        n = int(offset)
    except ValueError:
        raise ValidationFailed(_NOT_OURS) from None
    if not _FEED.match(feed_id) or not _MAC.match(mac) or not 0 < n <= 1_000_000 or body != f"{feed_id}:{n}":
        raise ValidationFailed(_NOT_OURS)
    if not hmac.compare_digest(mac, _mac(key, body)):  # well formed: most likely a sibling's key, not a client bug
        raise ValidationFailed(_OTHER_KEY)
    return Cursor(feed_id, n)


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, b"feed-cursor|" + body.encode(), hashlib.sha256).hexdigest()[:32]
