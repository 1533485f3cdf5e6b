"""Request limits: per-key rate limits (token buckets), request body size, uploaded image checks."""

from __future__ import annotations

import io
import time
from collections import OrderedDict

from recsys.errors import BadMedia, PayloadTooLarge, RateLimited


class RateLimiter:
    """Token buckets keyed by caller: ``per_minute`` sustained, bursts of a tenth of that (at least 10).

    Runs on the event loop only (no locks). Keeps at most ``max_keys`` buckets, dropping the least recently used.
    """

    def __init__(self, per_minute: int, *, max_keys: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(10, per_minute // 10))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, key: str, now: float | None = None) -> None:
        """Take one token for ``key`` or raise :class:`RateLimited` saying when to retry."""
        if not self.enabled:
            return
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
            raise RateLimited(f"rate limit of {round(self.rate * 60)} requests per minute exceeded; "
                              f"retry in {wait:.1f} s", retry_after=max(1, int(wait + 0.999)))
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


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
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadMedia(f"the upload is not a readable image ({type(e).__name__}); send one of "
                       f"{', '.join(sorted(allowed))}") from None
    if fmt not in allowed:
        raise BadMedia(f"image format {fmt or 'unknown'} is not accepted; send one of {', '.join(sorted(allowed))}")
    if width <= 0 or height <= 0:
        raise BadMedia("the uploaded image has no pixels")
    if width * height > max_pixels:
        raise PayloadTooLarge(f"the uploaded image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    return fmt
