"""Rate limits per key, request body limits, image upload limits."""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
import uuid
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from recsys.api.auth import create_key
from recsys.api.limits import RateLimiter, RateStatus, check_image
from recsys.errors import BadMedia, ConfigError, PayloadTooLarge, RateLimited
from recsys.store import Store
from tests.conftest import run_async


def test_limiter_counts_per_key() -> None:
    lim = RateLimiter(3, strategy="moving-window")

    async def run() -> list[RateStatus | None]:
        return [await lim.check(k) for k in ("a", "a", "a", "a", "b")]

    a1, a2, a3, a4, b1 = run_async(run())
    assert a1 and a2 and a3 and a4 and b1
    assert [s.remaining for s in (a1, a2, a3)] == [2, 1, 0] and all(s.allowed for s in (a1, a2, a3))
    assert not a4.allowed and a4.limit == 3 and 1 <= a4.reset <= 60
    with pytest.raises(RateLimited) as e:
        a4.raise_if_over()
    assert e.value.retry_after == a4.reset
    assert b1.allowed and b1.remaining == 2  # other keys are not affected
    assert not RateLimiter(0).enabled and run_async(RateLimiter(0).check("a")) is None


def test_limiter_refuses_unknown_storage() -> None:
    with pytest.raises(ConfigError, match="rate_limit_storage"):
        RateLimiter(10, "nosuch://x")


def test_rate_limit_per_key(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    c = make_client(auth=True, rate_limit_per_minute=10, rate_limit_strategy="moving-window")
    k1, _ = create_key(sqlite_store, "k1", "read")
    k2, _ = create_key(sqlite_store, "k2", "read")
    answers = [c.get("/v1/trending", headers={"X-API-Key": k1}) for _ in range(12)]
    assert [r.status_code for r in answers] == [200] * 10 + [429, 429]
    assert [int(r.headers["ratelimit-remaining"]) for r in answers] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]
    assert all(r.headers["ratelimit-limit"] == "10" and 1 <= int(r.headers["ratelimit-reset"]) <= 60 for r in answers)
    r = answers[-1]
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert c.get("/v1/trending", headers={"X-API-Key": k2}).status_code == 200


def test_default_strategy_limits(make_client: Callable[..., TestClient]) -> None:
    c = make_client(rate_limit_per_minute=5)  # sliding window counter, in memory, per client address
    codes = [c.get("/v1/trending").status_code for _ in range(7)]
    # 5, or 6 when the run straddles a minute boundary (the previous minute's count is then weighed down a little)
    assert codes.count(200) in (5, 6) and codes[-1] == 429


def redis_url() -> str | None:
    """The test Redis (``RECSYS_TEST_REDIS_URL``, default the local one), or None when nothing answers there."""
    url = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1).close()
    except OSError:
        return None
    return url


def _redis_url() -> str:
    url = redis_url()
    if url is None:
        pytest.skip("no Redis server at RECSYS_TEST_REDIS_URL (default redis://127.0.0.1:6379)")
    return url


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter"])
def test_shared_limit_holds_across_instances(make_client: Callable[..., TestClient], sqlite_store: Store,
                                             strategy: str) -> None:
    """Two app instances (two workers or replicas) on one Redis admit N per key per minute together, not 2N."""
    url = _redis_url()
    a, b = (make_client(auth=True, rate_limit_per_minute=6, rate_limit_storage=url, rate_limit_strategy=strategy)
            for _ in range(2))
    key, _ = create_key(sqlite_store, f"shared-{uuid.uuid4().hex}", "read")  # fresh counters on every run
    answers = [(a if i % 2 else b).get("/v1/trending", headers={"X-API-Key": key}) for i in range(10)]
    codes = [r.status_code for r in answers]
    if strategy == "moving-window":  # exact: any 60 s
        assert codes == [200] * 6 + [429] * 4
        assert [r.headers["ratelimit-remaining"] for r in answers[:6]] == ["5", "4", "3", "2", "1", "0"]
    else:  # one more when the run straddles a minute boundary (the previous minute's count weighs a little less)
        assert codes.count(200) in (6, 7) and codes[-1] == 429, codes


def test_memory_limit_is_per_instance(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    """The documented default: each process counts on its own."""
    a, b = (make_client(auth=True, rate_limit_per_minute=3, rate_limit_strategy="moving-window") for _ in range(2))
    key, _ = create_key(sqlite_store, "mem", "read")
    codes = [(a if i % 2 else b).get("/v1/trending", headers={"X-API-Key": key}).status_code for i in range(8)]
    assert codes.count(200) == 6


def test_unreachable_storage_fails_open(make_client: Callable[..., TestClient],
                                        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = make_client(rate_limit_per_minute=1, rate_limit_storage=f"redis://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger="recsys.api.limits"):
        answers = [c.get("/v1/trending") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert "ratelimit-limit" not in answers[0].headers
    assert "rate limit storage unreachable" in caplog.text


def test_body_limit(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_body_bytes=2000)
    events = [{"user_id": "u", "item_id": "s1", "type": "view"}] * 100
    r = c.post("/v1/events", json={"events": events})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert "limit of 2,000 bytes (RECSYS_API__MAX_BODY_BYTES=2000)" in r.json()["detail"], r.text  # what to change

    def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: the streamed size is counted
        yield b'{"events": ['
        for _ in range(100):
            yield b'{"user_id": "u", "item_id": "s1", "type": "view"},'
        yield b'{"user_id": "u", "item_id": "s1", "type": "view"}]}'

    r = c.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert "RECSYS_API__MAX_BODY_BYTES=2000" in r.json()["detail"], r.text
    assert c.post("/v1/events", json={"events": events[:2]}).status_code == 200


def _image(size: tuple[int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, format=fmt)
    return buf.getvalue()


def _bomb() -> bytes:
    """A tiny PNG whose header declares 100,000 x 100,000 pixels."""
    png = _image((1, 1), "PNG")
    ihdr = png[12:29]  # b"IHDR" + 13 bytes of data
    big = b"IHDR" + struct.pack(">II", 100_000, 100_000) + ihdr[12:]
    return png[:12] + big + struct.pack(">I", zlib.crc32(big)) + png[33:]


def test_check_image() -> None:
    kw = {"max_bytes": 50_000, "max_pixels": 10_000, "formats": ["PNG", "JPEG"]}
    assert check_image(_image((50, 50), "PNG"), **kw) == "PNG"  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):
        check_image(_image((200, 200), "PNG"), **kw)  # type: ignore[arg-type]  # 40k pixels
    with pytest.raises(BadMedia, match="TIFF"):
        check_image(_image((20, 20), "TIFF"), **kw)  # type: ignore[arg-type]
    with pytest.raises(BadMedia, match="damaged or truncated"):
        check_image(_image((50, 50), "PNG")[:20], **kw)  # type: ignore[arg-type]
    for junk in (b"GIF89a-not-really", b"just some text"):
        with pytest.raises(BadMedia, match="not an image file"):
            check_image(junk, **kw)  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge, match="more pixels than Pillow will open"):
        check_image(_bomb(), **kw)  # type: ignore[arg-type]
    with pytest.raises(BadMedia):
        check_image(b"", **kw)  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):
        check_image(b"x" * 50_001, **kw)  # type: ignore[arg-type]


def test_image_upload_limits(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_image_bytes=20_000, max_image_pixels=10_000, image_formats=["PNG"])

    def post(data: bytes):  # type: ignore[no-untyped-def]
        return c.post("/v1/search/image", files={"image": ("q", data, "application/octet-stream")})

    assert post(_image((40, 40), "PNG")).status_code == 200
    r = post(_image((101, 100), "PNG"))
    assert r.status_code == 413 and "pixels" in r.json()["error"]["message"]
    r = post(_image((40, 40), "JPEG"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_media"
    r = post(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_media"
    assert post(b"0" * 30_000).status_code == 413


def test_cors_off_by_default(make_client: Callable[..., TestClient]) -> None:
    c = make_client()
    r = c.options("/v1/trending", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
    c2 = make_client(cors_origins=["https://shop.example"])
    r = c2.get("/v1/trending", headers={"Origin": "https://shop.example"})
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    # the request middleware's own answers too (a browser saw an opaque network error instead of the 413's JSON)
    c3 = make_client(cors_origins=["https://shop.example"], max_body_bytes=2000)
    r = c3.post("/v1/events", json={"events": [{"user_id": "u", "item_id": "s1", "type": "view"}] * 100},
                headers={"Origin": "https://shop.example"})
    assert r.status_code == 413 and r.headers["access-control-allow-origin"] == "https://shop.example"


def test_unknown_keys_are_rate_limited(make_client: Callable[..., TestClient]) -> None:
    c = make_client(auth=True, rate_limit_per_minute=10, rate_limit_strategy="moving-window")
    codes = [c.get("/v1/trending", headers={"X-API-Key": f"rsk_guess{i}"}).status_code for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_requests_without_a_key_are_rate_limited_too(make_client: Callable[..., TestClient]) -> None:
    c = make_client(auth=True, rate_limit_per_minute=10, rate_limit_strategy="moving-window")
    codes = [c.get("/v1/trending").status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    assert c.get("/v1/trending").headers.get("retry-after")
