"""Request limits: per-key rate limits (the `limits` library), request body size, uploaded image checks.

Rate limits count in a `limits` storage: ``memory://`` (the default) counts in this process only, so with
``recsys serve --workers N`` or several replicas each process admits the limit on its own; a shared storage
(``redis://host:6379``, ``redis+sentinel://...`` with the ``redis`` extra, ``memcached://host:11211`` with the
``memcached`` extra) makes the limit hold across all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from recsys.config import without_password
from recsys.errors import BadMedia, ConfigError, PayloadTooLarge, RateLimited

log = logging.getLogger(__name__)

STRATEGIES = ("sliding-window-counter", "moving-window", "fixed-window")
_FAIL_OPEN_S = 5.0
"""After a storage error (e.g. Redis down) requests are admitted unlimited for this long, then the storage is
tried again: an outage of the counter store must not take the API down with it."""
_STORAGE_TIMEOUT_S = 0.5
_SETTING = "RECSYS_API__RATE_LIMIT_STORAGE"
_FIX = (f"fix the password or database number in {_SETTING} (redis://:PASSWORD@host:6379/0; a Redis has databases "
        "0-15 unless configured otherwise), or unset it to count in memory://")


@dataclass(frozen=True)
class RateStatus:
    """One key's standing after a request: the ``RateLimit-*`` response headers."""

    limit: int
    remaining: int
    reset: int
    """Seconds until the window frees capacity again."""
    allowed: bool = True

    def raise_if_over(self) -> None:
        if not self.allowed:
            raise RateLimited(f"rate limit of {self.limit} requests per minute exceeded; retry in {self.reset} s",
                              retry_after=self.reset)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"ratelimit-limit", str(self.limit).encode()), (b"ratelimit-remaining", str(self.remaining).encode()),
                (b"ratelimit-reset", str(self.reset).encode())]


class RateLimiter:
    """At most ``per_minute`` requests per key in a minute, counted in ``storage`` with ``strategy``.

    ``sliding-window-counter`` (the default) keeps two counters per key and weighs the previous minute's by how much
    of it still overlaps; ``moving-window`` is exact (any 60 s) but keeps a timestamp per request;
    ``fixed-window`` resets on the minute and can admit up to twice the limit across a boundary.
    The storage client is made on first use in the running event loop (async clients are bound to one).
    """

    def __init__(self, per_minute: int, storage: str = "memory://", strategy: str = "sliding-window-counter") -> None:
        from limits import RateLimitItemPerMinute

        self.per_minute = per_minute
        self.item = RateLimitItemPerMinute(max(1, per_minute))
        if strategy not in STRATEGIES:
            raise ConfigError(f"api.rate_limit_strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        self.strategy = strategy
        self.uri = storage if storage.startswith("async+") else "async+" + storage
        self._check_database()
        self._make_storage()  # a wrong URI fails at start-up, not on the first request
        self._limiter: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_at = 0.0
        self._logged: dict[bool, float] = {}
        if self.enabled and self.uri.startswith("async+redis"):
            self._probe()  # a Redis that answers but refuses recsys fails at start-up too

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    @property
    def shared(self) -> bool:
        return not self.uri.startswith("async+memory")

    def _make_storage(self) -> Any:
        from limits.errors import ConfigurationError
        from limits.storage import storage_from_string

        options: dict[str, Any] = {"wrap_exceptions": True}
        if self.uri.startswith("async+redis"):
            options.update(implementation="redispy", socket_timeout=_STORAGE_TIMEOUT_S,
                           socket_connect_timeout=_STORAGE_TIMEOUT_S)
        elif self.uri.startswith("async+memcached"):  # memcachio waits for a reply without end by default
            options.update(connect_timeout=_STORAGE_TIMEOUT_S, read_timeout=_STORAGE_TIMEOUT_S)
        try:
            return storage_from_string(self.uri, **options)
        except (ConfigurationError, ValueError) as e:  # the library's message repeats the URI, password and all
            raise ConfigError(f"api.rate_limit_storage {self.shown!r} is not usable: {self.masked(str(e))}; use "
                              "memory://, or redis://host:6379 (`pip install 'recsys[redis]'`) or "
                              "memcached://host:11211 (`pip install 'recsys[memcached]'`)") from None

    @property
    def shown(self) -> str:
        """The storage URI as it may be printed: its passwords masked."""
        return without_password(self.uri.removeprefix("async+"))

    def masked(self, text: str) -> str:
        """``text`` (a library's or a client's message) with every password of the storage URI shown as ``***``,
        whatever form of the URI it repeats (with or without ``async+``, percent-decoded or not)."""
        for secret in _secrets(self.uri):
            text = text.replace(secret, "***")
        return text

    def _check_database(self) -> None:
        """Refuse a Redis database path that is not a number (``redis://host:6379/abc``): redis-py ignores it and
        counts in database 0, shared with whatever else uses it."""
        try:
            parts = urlsplit(self.uri.removeprefix("async+"))
        except ValueError:
            return  # unparsable: the library says why
        db = parts.path.strip("/")
        if parts.scheme in ("redis", "rediss") and db and not db.isdigit():
            raise ConfigError(f"api.rate_limit_storage {self.shown!r}: the database {db!r} is not a number (Redis "
                              f"would count in database 0); set {_SETTING} to redis://host:6379/N, N a number")

    def _probe(self) -> None:
        """Talk to the storage once (a read, nothing written): one that refuses recsys (a wrong password, a database
        the server does not have) refuses the start in one line; one that does not answer is the fail-open case."""
        failed: list[Exception] = []

        async def read() -> None:
            storage = self._make_storage()
            try:
                await storage.get("recsys/start-up-check")
            finally:
                await _close(storage)

        def run() -> None:  # its own event loop: the caller's may be running (a uvicorn worker's app factory)
            try:
                asyncio.run(read())
            except Exception as e:
                failed.append(e)

        thread = threading.Thread(target=run, name="rate-limit-storage-check")
        thread.start()
        thread.join()
        if not failed:
            return
        said = self.masked(_said(failed[0]))
        if _refusal(failed[0]) is not None:
            raise ConfigError(f"api.rate_limit_storage {self.shown!r} answers but refuses recsys ({said}): {_FIX}")
        log.warning("rate limit storage %s does not answer at start-up (%s): requests are admitted unlimited while "
                    "it does not", self.shown, said)

    def _strategy(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._loop is not loop:
            from limits.aio import strategies

            kinds: dict[str, Any] = {"sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
                                     "moving-window": strategies.MovingWindowRateLimiter,
                                     "fixed-window": strategies.FixedWindowRateLimiter}
            self._limiter = kinds[self.strategy](self._make_storage())
            self._loop = loop
        return self._limiter

    async def check(self, key: str) -> RateStatus | None:
        """Count one request for ``key``: its standing (``allowed`` False when over the limit), or None when limits
        are off or the storage fails (fail open: unreachable, a warning; refusing recsys, an error)."""
        if not self.enabled or time.monotonic() < self._open_at:
            return None
        try:
            limiter = self._strategy()
            allowed = await limiter.hit(self.item, "recsys", self.strategy, key)
            stats = await limiter.get_window_stats(self.item, "recsys", self.strategy, key)
        except Exception as e:  # limits' StorageError, or a client that cannot connect
            now = time.monotonic()
            self._open_at = now + _FAIL_OPEN_S
            refused = _refusal(e) is not None
            if now - self._logged.get(refused, -60.0) > 30:
                self._logged[refused] = now
                said = self.masked(_said(e))
                if refused:  # not an outage: it lasts until the setting or the server is fixed
                    log.error("rate limit storage %s answers but refuses recsys (%s), admitting requests unlimited "
                              "(retried every %.0f s): %s", self.shown, said, _FAIL_OPEN_S, _FIX)
                else:
                    log.warning("rate limit storage unreachable, admitting requests unlimited for %.0f s: %s",
                                _FAIL_OPEN_S, said)
            return None
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return RateStatus(self.per_minute, max(0, int(stats.remaining)), reset, bool(allowed))


_USERINFO_PASSWORD = re.compile(r"://[^:/@\s]*:([^@\s]+)@")
_QUERY_PASSWORD = re.compile(r"password=([^&#\s]+)", re.IGNORECASE)


def _secrets(uri: str) -> list[str]:
    """The passwords in a storage URI, as written and percent-decoded, longest first (parsed by hand too: a URI
    that does not parse, a bad port, still has its password)."""
    found = set(_USERINFO_PASSWORD.findall(uri)) | set(_QUERY_PASSWORD.findall(uri))
    with contextlib.suppress(ValueError):  # a bad IPv6 host
        found.add(urlsplit(uri).password or "")
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if s), key=len, reverse=True)


def _said(e: BaseException) -> str:
    """An exception as a log line: limits' StorageError said through the client's own error."""
    inner = getattr(e, "storage_error", None) or e
    return f"{type(inner).__name__}: {str(inner)[:200]}"


def _refusal(e: BaseException) -> BaseException | None:
    """The error of a storage that answered and refused (Redis: a wrong password, an ACL, a database out of range),
    as opposed to one that does not answer (connect refused, timeout): None for those."""
    try:
        from redis.exceptions import AuthenticationError, ResponseError
    except ImportError:
        return None
    seen: BaseException | None = e
    for _ in range(4):  # StorageError -> the client's error -> its cause
        if seen is None:
            return None
        if isinstance(seen, AuthenticationError | ResponseError):
            return seen
        seen = getattr(seen, "storage_error", None) or seen.__cause__
    return None


async def _close(storage: Any) -> None:
    """Close the clients of a storage made for one check (a Redis client left open warns at exit)."""
    bridge = getattr(storage, "bridge", None)
    for name in ("storage", "storage_replica"):
        aclose = getattr(getattr(bridge, name, None), "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                await aclose()


def check_image(data: bytes, *, max_bytes: int, max_pixels: int, formats: list[str]) -> str:
    """Refuse an upload over the byte or pixel limits or not in the format allow-list; returns the format.

    Only the header is parsed here (no decoding), so a decompression bomb is refused before it costs memory.
    """
    if not data:
        raise BadMedia("the uploaded image is empty")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the uploaded image has {len(data)} bytes; the limit is {max_bytes}")
    from PIL import Image, UnidentifiedImageError

    allowed = {f.upper() for f in formats}
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "").upper()
            width, height = im.size
    except Image.DecompressionBombError:
        raise PayloadTooLarge(f"the uploaded image declares more pixels than Pillow will open; the limit is "
                              f"{max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        why = "not an image file" if isinstance(e, UnidentifiedImageError) else "a damaged or truncated image"
        raise BadMedia(f"the upload is {why}; send one of {', '.join(sorted(allowed))}") from None
    if fmt not in allowed:
        raise BadMedia(f"image format {fmt or 'unknown'} is not accepted; send one of {', '.join(sorted(allowed))}")
    if width <= 0 or height <= 0:
        raise BadMedia("the uploaded image has no pixels")
    if width * height > max_pixels:
        raise PayloadTooLarge(f"the uploaded image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    return fmt
