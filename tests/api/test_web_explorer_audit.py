"""The explorer's answers to a browser audit, without a browser: pages are never cached (Back asks again), "clear"
keeps who and how, a like without a login says log in again, POST-only addresses opened by hand are pages, the
Diversity list waits for Apply, user text is isolated, a like without JavaScript is focused, links are underlined and
the in-stock green is readable."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from recsys.api.auth import create_key
from recsys.api.testing import FakeRecommender
from recsys.api.web.render import WEB
from recsys.store import Store
from tests.api.test_web_explorer import _luminance, _store_events

ORIGIN = {"Origin": "http://testserver"}
FETCH = {**ORIGIN, "X-Explorer": "fetch"}
RLO = "\u202e"


@pytest.fixture
def fake(sqlite_store: Store, tmp_path: Path) -> FakeRecommender:
    picture = tmp_path / "media" / "s1.png"
    picture.parent.mkdir()
    Image.new("RGB", (8, 8), "red").save(picture, format="PNG")
    items: list[dict[str, Any]] = [{"item_id": f"s{i}", "title": f"red shoe {i}", "category": "shoes",
                                    "in_stock": True} for i in range(1, 6)]
    items[0]["media"] = [{"kind": "image", "uri": str(picture), "status": "ok", "error": None}]
    items.append({"item_id": "rtl", "title": f"{RLO}override text", "category": "shoes"})
    return FakeRecommender(sqlite_store, items)


@pytest.fixture
def web(make_client: Callable[..., TestClient], fake: FakeRecommender, tmp_path: Path) -> TestClient:
    return make_client(fake, media_roots=[tmp_path / "media"])


def _clear(page: str) -> str:
    found = re.search(r'<a class="clear" href="([^"]*)"', page)
    assert found, "no clear link"
    return html.unescape(found.group(1))


def test_pages_are_never_cached_but_pictures_and_assets_are(web: TestClient) -> None:
    """D1: Back and Forward ask the server again (no stale history, no second like from a stale page)."""
    for url in ("/", "/users/u1", "/items/s1", "/items/nope", "/status", "/login", "/users/u1?fragment=1"):
        assert web.get(url).headers.get("cache-control") == "no-store", url
    assert web.post("/feedback", data={"user_id": "u1", "item_id": "s1"}, headers=FETCH).headers[
        "cache-control"] == "no-store"
    assert "no-store" not in web.get("/explorer/static/explorer.css").headers["cache-control"]
    media = web.get("/media/s1")
    assert media.status_code == 200 and media.headers["cache-control"] == "private, max-age=3600"


def test_clear_drops_only_the_filters(web: TestClient) -> None:
    """D2: the like-as user, the modality, the diversity and the query survive "clear"."""
    assert _clear(web.get("/items/s1?category=shoes&user=user-0001&modality=text").text) == \
        "/items/s1?modality=text&user=user-0001"
    assert _clear(web.get("/users/u1?category=shoes&diversity=0.6").text) == "/users/u1?diversity=0.6"
    assert _clear(web.get("/?q=red&modality=image&in_stock=true").text) == "/?modality=image&q=red"
    assert _clear(web.get("/?price_min=1").text) == "/"


def test_a_like_without_a_login_says_log_in_again(make_client: Callable[..., TestClient], fake: FakeRecommender,
                                                  sqlite_store: Store) -> None:
    """D3: the cookie gone (its max-age ran out): the like says the session expired, with a login link back to
    the page it was sent from; a read key's refusal says likes need an events or admin key, in a shopper's words."""
    client = make_client(fake, auth=True)
    admin, _ = create_key(sqlite_store, "admin", "admin")
    assert client.post("/login", data={"key": admin, "next": "/"}, headers=ORIGIN,
                       follow_redirects=False).status_code == 303
    client.cookies.clear()
    sent_from = {"Referer": "http://testserver/items/s1?user=u1"}
    for headers in ({**FETCH, **sent_from}, {**ORIGIN, **sent_from}):
        r = client.post("/feedback", data={"user_id": "u1", "item_id": "s1"}, headers=headers,
                        follow_redirects=False)
        assert r.status_code == 401 and "session has expired: log in again" in r.text
        assert "X-API-Key" not in r.text
        assert '<a id="login-link" href="/login?next=/items/s1%3Fuser%3Du1">' in r.text
    assert not fake.events.get("u1")
    read, _ = create_key(sqlite_store, "reader", "read")
    client.post("/login", data={"key": read, "next": "/"}, headers=ORIGIN, follow_redirects=False)
    r = client.post("/feedback", data={"user_id": "u1", "item_id": "s1"},
                    headers={**FETCH, "Referer": "http://testserver/users/u1"})
    assert r.status_code == 403 and "Likes need an events or admin key" in r.text and "scope" not in r.text
    assert 'href="/login?next=/users/u1"' in r.text
    elsewhere = client.post("/feedback", data={"user_id": "u1", "item_id": "s1"},
                            headers={**FETCH, "Referer": "http://evil.example/users/u1"})
    assert 'href="/login?next=/"' in elsewhere.text  # never a login that returns to another site
    assert client.get("/users/u1", follow_redirects=False).status_code == 200  # reading still works


def test_post_only_addresses_opened_by_hand_are_pages(web: TestClient) -> None:
    """D4: the address bar after an image search or a refused like, reopened: the search page, not JSON."""
    web.cookies.set("recsys_session", "kept")
    for url in ("/search/image", "/feedback", "/logout"):
        r = web.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", url
        assert "set-cookie" not in r.headers  # a GET logs nobody out
        followed = web.get(url)
        assert followed.status_code == 200 and followed.headers["content-type"].startswith("text/html")


def test_diversity_waits_for_apply(web: TestClient) -> None:
    """D5: no submit on change (an arrow key); the Apply button is there with JavaScript too, and the form comes
    back to #diversity, where the script puts the focus."""
    page = web.get("/users/u1?diversity=0.3").text
    form = re.search(r'<form class="diversity"[^>]*>(.*?)</form>', page, re.S)
    assert form and "data-autosubmit" not in page and "<noscript>" not in form.group(1)
    assert 'action="/users/u1#diversity"' in form.group(0) and 'id="diversity-apply"' in form.group(1)
    assert "data-autosubmit" not in (WEB / "static" / "explorer.js").read_text()


def test_user_text_is_isolated_and_kept_out_of_the_tab_title(web: TestClient) -> None:
    """D7: a title's U+202E must not reverse the explorer's own words after it."""
    page = web.get("/users/u9?liked=rtl").text
    assert re.search(r'id="flash"[^>]*>You liked “<bdi>\u202eoverride text</bdi>”: recommendations', page)
    item = web.get("/items/rtl").text
    title = re.search(r"<title>(.*?)</title>", item, re.S)
    assert title and RLO not in title.group(1) and "override text · recsys explorer" in title.group(1)
    search = web.get("/?q=" + RLO + "abc").text
    assert "Results for “<bdi>\u202eabc</bdi>”" in search and RLO not in re.findall(r"<title>(.*?)<", search)[0]
    assert "<bdi>" not in re.findall(r"<title>(.*?)<", search)[0]
    css = (WEB / "static" / "explorer.css").read_text()
    isolated = re.search(r"([^{}/]*)\{\s*unicode-bidi:\s*isolate", css)
    assert isolated and {".card-title", ".because a", "#user-id", "bdi"} <= {
        s.strip() for s in isolated.group(1).split(",")}


def test_a_like_without_javascript_is_focused_and_a_new_shopper_named(web: TestClient, sqlite_store: Store) -> None:
    """D8: the reloaded page puts the focus on its message (read out, no script needed); the fetch fragment does
    not (the script keeps the focus on the buttons). A first event of an id the store did not know says so."""
    assert re.search(r'<p class="flash" id="flash" tabindex="-1" autofocus>', web.get("/users/u2?liked=s2").text)
    fetched = web.post("/feedback", data={"user_id": "u2", "item_id": "s2"}, headers=FETCH).text
    assert 'id="flash"' in fetched and "autofocus" not in fetched
    _store_events(sqlite_store, [("user-0002", "s1"), ("user-0003", "s1"), ("user-0003", "s2")])
    assert "You liked “<bdi>red shoe 1</bdi>” as <bdi>user-0002</bdi>, a new shopper" in web.get(
        "/users/user-0002?liked=s1").text
    assert "a new shopper" not in web.get("/users/user-0003?liked=s2").text


def test_links_are_underlined_and_in_stock_is_readable(web: TestClient) -> None:
    """D9: links told from text without colour; the in-stock green at least 4.5:1 on white; the no-image tile
    is an image with a name for screen readers."""
    css = (WEB / "static" / "explorer.css").read_text()
    link = re.search(r"(?m)^a \{([^}]*)\}", css)
    assert link and "text-decoration: underline" in link.group(1)
    good = re.search(r"--good:\s*(#[0-9a-fA-F]{6})", css)
    assert good and (1.05) / (_luminance(good.group(1)) + 0.05) >= 4.5
    assert '<div class="hero noimg" role="img" aria-label="no image">' in web.get("/items/s2").text


def test_an_explorer_page_over_the_rate_limit_says_when_to_come_back(make_client: Callable[..., TestClient],
                                                                     fake: FakeRecommender) -> None:
    client = make_client(fake, rate_limit_per_minute=2, rate_limit_strategy="moving-window")
    answers = [client.get("/") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1 and "text/html" in answers[-1].headers["content-type"]
