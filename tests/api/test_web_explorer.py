"""The explorer's pages and feedback route over the in-memory fake (no browser): removed items take no likes, a like
without JavaScript says what it stored, a misspelt user id gets a hint, every button has its own name, and the style
sheet keeps its colours readable and styles the sources the ranker names."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender
from recsys.api.web.render import WEB
from recsys.store import Store

ORIGIN = {"Origin": "http://testserver"}  # a browser names the page's origin on every form post
FETCH = {**ORIGIN, "X-Explorer": "fetch"}


@pytest.fixture
def fake(sqlite_store: Store) -> FakeRecommender:
    items: list[dict[str, Any]] = [{"item_id": f"s{i}", "title": f"red shoe {i}", "category": "shoes"}
                                   for i in range(1, 6)]
    items += [{"item_id": "hid", "title": "Hidden tote", "category": "shoes", "hidden": True},
              {"item_id": "del", "title": "Deleted tote", "category": "shoes", "deleted": True}]
    return FakeRecommender(sqlite_store, items)


@pytest.fixture
def web(make_client: Callable[..., TestClient], fake: FakeRecommender) -> TestClient:
    return make_client(fake)


def _store_events(store: Store, events: list[tuple[str, str]]) -> None:
    """(user, item) likes in the SQLite store: the explorer reads users and histories from it."""
    from recsys.store.events import ingest_events
    from recsys.store.importers.records import ItemRecord
    from recsys.store.importers.report import TableCounts
    from recsys.store.importers.writer import upsert_items

    with store.session() as s:
        upsert_items(s, [ItemRecord(i, i, "", None) for i in sorted({i for _, i in events})], TableCounts())
    results = ingest_events(store, [{"user_id": u, "item_id": i, "type": "like"} for u, i in events])
    assert all(r.status == "stored" for r in results)


def test_hidden_and_deleted_items_take_no_likes(web: TestClient, fake: FakeRecommender) -> None:
    """A user page loaded before an item was hidden or deleted still has its buttons: the route refuses, in words
    the page's script shows (the error page's message), and stores nothing."""
    for item, state in (("hid", "hidden"), ("del", "deleted")):
        for kind in ("like", "dislike"):
            r = web.post("/feedback", data={"user_id": "u1", "item_id": item, "type": kind}, headers=FETCH)
            assert r.status_code == 422, r.text
            message = re.search(r'id="error-message"[^>]*>([^<]*)<', r.text)
            assert message and f"is {state}" in message.group(1) and f"can no longer be {kind}d" in message.group(1)
        plain = web.post("/feedback", data={"user_id": "u1", "item_id": item}, headers=ORIGIN,
                         follow_redirects=False)
        assert plain.status_code == 422 and "can no longer be liked" in plain.text
    assert not fake.events.get("u1")
    ok = web.post("/feedback", data={"user_id": "u1", "item_id": "s1", "type": "like"}, headers=FETCH)
    assert ok.status_code == 200 and "You liked" in ok.text


def test_a_like_without_javascript_says_what_it_stored(web: TestClient) -> None:
    r = web.post("/feedback", data={"user_id": "u2", "item_id": "s2"}, headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/users/u2?liked=s2"  # no empty "?" nor "&"
    page = web.get(r.headers["location"]).text
    assert re.search(r'id="flash"[^>]*>You liked “<bdi>red shoe 2</bdi>”', page)
    r = web.post("/feedback", data={"user_id": "u2", "item_id": "s3", "type": "dislike", "category": "shoes",
                                    "diversity": "0.3"}, headers=ORIGIN, follow_redirects=False)
    assert r.headers["location"] == "/users/u2?category=shoes&diversity=0.3&disliked=s3"
    assert "You disliked “<bdi>red shoe 3</bdi>”" in web.get(r.headers["location"]).text
    assert 'id="flash"' not in web.get("/users/u2?liked=%3Cnot-an-item%3E").text  # only a stored item is named


def test_an_unknown_user_is_said_to_be_new_with_the_ids_it_may_have_meant(web: TestClient,
                                                                           sqlite_store: Store) -> None:
    _store_events(sqlite_store, [("user-0001", "s1"), ("user-0002", "s1"), ("user-0100", "s2"), ("zed", "s2")])
    page = web.get("/users/user-001").text
    hint = re.search(r'id="user-unknown"(.*?)</p>', page, re.S)
    assert hint and "is not in the store: a new shopper" in hint.group(1)
    assert '<a href="/users/user-0001">user-0001</a>' in hint.group(1) and "user-0100" not in hint.group(1)
    assert "Did you mean" not in web.get("/users/qqqqqq").text and "not in the store" in web.get("/users/q").text
    assert 'id="user-unknown"' not in web.get("/users/user-0001").text  # a stored user: no note
    assert web.get("/users/us%25").status_code == 200  # LIKE wildcards are plain characters


def test_buttons_have_their_own_names_and_each_card_one_tab_stop(web: TestClient) -> None:
    page = web.get("/users/u3").text
    assert 'aria-label="Like red shoe 1"' in page and 'aria-label="Dislike red shoe 1"' in page
    assert '<span aria-hidden="true">♥</span> Like' in page
    cards = re.findall(r'<article class="card".*?</article>', page, re.S)
    assert cards and all(len(re.findall(r'<a (?![^>]*tabindex="-1")', c)) == 1 for c in cards)
    assert re.search(r'<body>\s*<a class="skip" href="#main">', page) and '<main id="main"' in page
    assert 'id="announce"' in page and 'aria-live="polite"' in page


def test_source_tags_are_styled_and_say_what_they_mean(web: TestClient) -> None:
    css = (WEB / "static" / "explorer.css").read_text()
    from recsys.serving.reasons import SOURCE_REASONS

    for source in (*SOURCE_REASONS, "search", "lexical", "image_search"):  # every source a list can name
        assert f".tag.src-{source}" in css, source
    page = web.get("/users/u4").text  # an unknown user's list is trending items tagged "popular"
    assert re.search(r'<span class="tag src-popular" title="popular with everyone">popular</span>', page)
    assert 'class="tag src-search" title="near your words by meaning"' in web.get("/?q=red").text


def _luminance(hex_colour: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(int(hex_colour[i:i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_muted_text_is_readable_and_never_tiny() -> None:
    """WCAG AA: 4.5:1 for the muted text (footer, counts) on the page background, and no text under 11 px."""
    css = (WEB / "static" / "explorer.css").read_text()
    colours = dict(re.findall(r"--(muted|bg):\s*(#[0-9a-fA-F]{6})", css))
    lighter, darker = sorted((_luminance(colours["bg"]), _luminance(colours["muted"])), reverse=True)
    assert (lighter + 0.05) / (darker + 0.05) >= 4.5
    sizes = re.findall(r"font-size:\s*([0-9.]+)(px|em)", css)
    assert sizes and all(float(v) >= 11 for v, unit in sizes if unit == "px"), sizes
    assert not [v for v, unit in sizes if unit == "em" and float(v) < 1], sizes
