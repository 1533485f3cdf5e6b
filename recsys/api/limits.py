"""Request limits: per-key rate limits (the `limits` library), request body size, uploaded image checks.

Rate limits count in a `limits` storage: ``memory://`` (the default) counts in this process only, so with
``recsys serve --workers N`` or several replicas each process admits the limit on its own; a shared storage
(``redis://host:6379``, ``redis+sentinel://...`` with the ``redis`` extra, ``memcached://host:11211`` with the
``memcached`` extra) makes the limit hold across all of them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from recsys.config import without_password
from recsys.errors import BadMedia, ConfigError, PayloadTooLarge, RateLimited

log = logging.getLogger(__name__)

STRATEGIES = ("sliding-window-counter", "moving-window", "fixed-window")
_FAIL_OPEN_S = 5.0
"""After a storage error (e.g. Redis down) requests are admitted unlimited for this long, then the storage is
tried again: an outage of the counter store must not take the API down with it."""
_STORAGE_TIMEOUT_S = 0.5


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
        self._make_storage()  # a wrong URI fails at start-up, not on the first request
        self._limiter: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_at = 0.0
        self._last_warning = 0.0

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
            said = str(e).replace(self.uri, without_password(self.uri))
            raise ConfigError(f"api.rate_limit_storage {without_password(self.uri.removeprefix('async+'))!r} is not "
                              f"usable: {said}; use memory://, or redis://host:6379 (`pip install "
                              "'recsys[redis]'`) or memcached://host:11211 (`pip install 'recsys[memcached]'`)"
                              ) from None

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
        are off or the storage is unreachable (fail open)."""
        if not self.enabled or time.monotonic() < self._open_at:
            return None
        try:
            limiter = self._strategy()
            allowed = await limiter.hit(self.item, "recsys", self.strategy, key)
            stats = await limiter.get_window_stats(self.item, "recsys", self.strategy, key)
        except Exception as e:  # limits' StorageError, or a client that cannot connect
            self._open_at = time.monotonic() + _FAIL_OPEN_S
            now = time.monotonic()
            if now - self._last_warning > 30:
                self._last_warning = now
                log.warning("rate limit storage unreachable, admitting requests unlimited for %.0f s: %s",
                            _FAIL_OPEN_S, f"{type(e).__name__}: {str(e)[:200]}")
            return None
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return RateStatus(self.per_minute, max(0, int(stats.remaining)), reset, bool(allowed))


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
