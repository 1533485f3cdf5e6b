"""Rate limits per key, request body limits, image upload limits."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from recsys.api.auth import create_key
from recsys.api.limits import RateLimiter, check_image
from recsys.errors import BadMedia, PayloadTooLarge, RateLimited
from recsys.store import Store


def test_token_bucket() -> None:
    lim = RateLimiter(600)  # 10/s, bursts of 60
    for _ in range(60):
        lim.check("a", now=0.0)
    with pytest.raises(RateLimited) as e:
        lim.check("a", now=0.0)
    assert e.value.retry_after == 1
    lim.check("b", now=0.0)  # other keys are not affected
    lim.check("a", now=0.1)  # one token back after 0.1 s
    assert not RateLimiter(0).enabled


def test_rate_limit_per_key(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    c = make_client(auth=True, rate_limit_per_minute=60)  # bursts of 10
    k1, _ = create_key(sqlite_store, "k1", "read")
    k2, _ = create_key(sqlite_store, "k2", "read")
    codes = [c.get("/v1/trending", headers={"X-API-Key": k1}).status_code for _ in range(12)]
    assert codes[:10] == [200] * 10 and codes[10:] == [429, 429]
    r = c.get("/v1/trending", headers={"X-API-Key": k1})
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert c.get("/v1/trending", headers={"X-API-Key": k2}).status_code == 200


def test_body_limit(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_body_bytes=2000)
    events = [{"user_id": "u", "item_id": "s1", "type": "view"}] * 100
    r = c.post("/v1/events", json={"events": events})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: the streamed size is counted
        yield b'{"events": ['
        for _ in range(100):
            yield b'{"user_id": "u", "item_id": "s1", "type": "view"},'
        yield b'{"user_id": "u", "item_id": "s1", "type": "view"}]}'

    r = c.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert c.post("/v1/events", json={"events": events[:2]}).status_code == 200


def _image(size: tuple[int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, format=fmt)
    return buf.getvalue()


def test_check_image() -> None:
    kw = {"max_bytes": 50_000, "max_pixels": 10_000, "formats": ["PNG", "JPEG"]}
    assert check_image(_image((50, 50), "PNG"), **kw) == "PNG"  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):
        check_image(_image((200, 200), "PNG"), **kw)  # type: ignore[arg-type]  # 40k pixels
    with pytest.raises(BadMedia, match="TIFF"):
        check_image(_image((20, 20), "TIFF"), **kw)  # type: ignore[arg-type]
    with pytest.raises(BadMedia):
        check_image(b"GIF89a-not-really", **kw)  # type: ignore[arg-type]
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


def test_unknown_keys_are_rate_limited(make_client: Callable[..., TestClient]) -> None:
    c = make_client(auth=True, rate_limit_per_minute=60)  # bursts of 10
    codes = [c.get("/v1/trending", headers={"X-API-Key": f"rsk_guess{i}"}).status_code for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
