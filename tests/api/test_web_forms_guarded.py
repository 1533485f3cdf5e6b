"""The explorer's last unguarded doors: POST /logout refuses cross-site posts like the other forms, and forged
session cookies are rate-limited like unknown API keys (each one otherwise cost a key lookup, uncounted)."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from recsys.api.auth import KeyRing
from recsys.api.web import session

SAME = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}


def test_logout_refuses_cross_site_posts(make_client: Callable[..., TestClient]) -> None:
    client = make_client(auth=True)
    for headers in ({"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
                    {"origin": "https://evil.example"}, {"origin": "null"}, {}):
        r = client.post("/logout", headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers, (headers, r.status_code)
    r = client.post("/logout", headers=SAME, follow_redirects=False)
    assert r.status_code == 303 and "recsys_session" in r.headers["set-cookie"]


def _forged(name: str) -> str:
    enc = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return f"{enc}.{int(time.time()) + 3600}.{'0' * 64}"


def test_forged_cookies_are_rate_limited(make_client: Callable[..., TestClient],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(auth=True, rate_limit_per_minute=5)
    reads = 0
    real_entry = KeyRing.entry

    async def entry(self: KeyRing, name: str) -> object:
        nonlocal reads
        reads += 1
        return await real_entry(self, name)

    monkeypatch.setattr(KeyRing, "entry", entry)
    codes = [client.get("/", cookies={session.COOKIE: _forged(f"nobody-{i}")}, follow_redirects=False).status_code
             for i in range(12)]
    assert codes[:5] == [303] * 5 and set(codes[5:]) == {429}, codes
    assert reads == 5  # refused before the key lookup once over the limit


def test_a_post_through_a_proxy_that_rewrites_host_says_so(make_client: Callable[..., TestClient]) -> None:
    client = make_client(auth=True)  # the page is at shop.example; the proxy reached the server as testserver
    r = client.post("/logout", headers={"origin": "https://shop.example", "sec-fetch-site": "same-origin"},
                    follow_redirects=False)
    assert r.status_code == 403
    said = html.unescape(r.text)
    assert "'shop.example'" in said and "'testserver'" in said and "proxy_set_header Host" in said
