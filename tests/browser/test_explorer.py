"""The explorer in headless Chromium over a real built demo: search by text and image, open an item, like items on a
user page and watch the recommendations change without a reload. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ExplorerServer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # one demo build per session, then seconds per test


def _ids(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.itemId)")  # type: ignore[no-any-return]


def _images_loaded(page: Any, selector: str) -> tuple[int, int]:
    """(images under selector, of which decoded with a size): every product photo really arrived."""
    page.eval_on_selector_all(selector, "els => els.forEach(i => { i.loading = 'eager'; })")  # lazy ones too
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('{selector}')).every(i => i.complete)")
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        selector, "els => [els.length, els.filter(i => i.naturalWidth > 0).length]")


def test_search_by_text_and_by_image(page: Any, explorer: ExplorerServer, demo_dir: Path) -> None:
    page.goto(explorer.url + "/")
    assert page.locator("#results .card").count() > 0  # trending before any query
    page.fill("#q", "red dress")
    page.click("#search-button")
    page.wait_for_url("**/?q=red+dress*")
    assert "red dress" in page.inner_text("#results-title")
    assert page.locator("#results .card").count() >= 10
    total, ok = _images_loaded(page, "#results img.thumb")
    assert total >= 10 and ok == total
    screenshot(page, "search")

    image = sorted((demo_dir / "images").glob("*.png"))[0]
    page.set_input_files("#image-file", str(image))
    page.click("#image-button")
    page.wait_for_selector("#results-title:has-text('Looks like')")
    assert page.locator("#results .card").count() >= 10
    screenshot(page, "image-search")
    assert not page.errors, page.errors


def test_filters_narrow_the_results(page: Any, explorer: ExplorerServer) -> None:
    page.goto(explorer.url + "/")
    category = page.eval_on_selector("select[name=category] option", "o => o.value")
    page.select_option("form.filters select[name=category]", [category])
    page.fill("form.filters input[name=price_max]", "1000000")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**category=*")
    cats = page.eval_on_selector_all("#results .card .cat", "els => els.map(e => e.textContent)")
    assert cats and set(cats) == {category}


def _open_first_card(page: Any, url: str, cards: str) -> str:
    """Open ``url``, click the first of its ``cards`` and wait for that item's page; its id."""
    page.goto(url)
    first = page.locator(cards).first
    item_id = first.get_attribute("data-item-id")
    first.locator("a.card-title").click()
    page.wait_for_selector("#item-title")
    assert item_id and item_id in page.inner_text(".details .id")
    return str(item_id)


def test_open_an_item_and_its_similar_items(page: Any, explorer: ExplorerServer) -> None:
    item_id = _open_first_card(page, explorer.url + "/?q=striped", "#results .card")
    total, ok = _images_loaded(page, "img.hero")
    assert total >= 1 and ok == total
    similar = _ids(page, "#similar .card")
    assert len(similar) >= 10 and item_id not in similar
    screenshot(page, "item")
    page.click("#similar-title a:has-text('image')")
    page.wait_for_url("**modality=image*")
    assert len(_ids(page, "#similar .card")) >= 10
    assert not page.errors, page.errors


def test_likes_change_the_recommendations_on_the_spot(page: Any, explorer: ExplorerServer) -> None:
    page.goto(explorer.url + "/users/browser-visitor-1")
    assert page.inner_text("#user-id") == "browser-visitor-1"
    before = _ids(page, "#recs .card")
    assert len(before) >= 10
    # like two items of one category, far down the trending list
    cats = page.eval_on_selector_all("#recs .card", "els => els.map(e => e.querySelector('.cat')?.textContent)")
    counts = {c: cats.count(c) for c in cats}
    target = next(c for c in reversed(cats) if counts[c] >= 2)
    picks = [i for i, c in zip(before, cats, strict=True) if c == target][-2:]
    for n, item in enumerate(picks, start=1):
        page.click(f"#recs .card[data-item-id='{item}'] button.like")
        page.wait_for_selector(f"#live[data-version='{n}']")
        assert "recommendations updated" in page.inner_text("#flash")
    after = _ids(page, "#recs .card")
    assert after != before
    assert page.url.endswith("/users/browser-visitor-1")  # no reload, no redirect: updated in place
    assert set(picks) <= set(_ids(page, "#history .card"))
    after_cats = page.eval_on_selector_all("#recs .card .cat", "els => els.map(e => e.textContent)")
    share = sum(c == target for c in after_cats)
    assert share > counts[target]  # the liked category moved up
    assert page.locator("#recs .because").count() > 0  # "because you liked ..." on the new list
    screenshot(page, "user-after-likes", top=True)

    disliked = after[0]
    page.click(f"#recs .card[data-item-id='{disliked}'] button.dislike")
    page.wait_for_selector("#live[data-version='3']")
    assert disliked not in _ids(page, "#recs .card")
    assert not page.errors, page.errors


def test_user_page_with_history(page: Any, explorer: ExplorerServer) -> None:
    page.goto(explorer.url + "/")
    page.click(".users li:first-child a")
    page.wait_for_selector("#user-id")
    assert page.locator("#history .card").count() > 0
    assert page.locator("#recs .card .sources .tag").count() > 0
    assert page.locator("#recs .because").count() > 0
    total, ok = _images_loaded(page, "#live img")
    assert ok == total > 0
    screenshot(page, "user")


def test_api_docs_render_offline(page: Any, explorer: ExplorerServer) -> None:
    """/docs (Swagger UI) and /redoc render with every request to another host refused: nothing comes from a CDN."""
    refused: list[str] = []

    def local_only(route: Any) -> None:
        if route.request.url.startswith(explorer.url):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(explorer.url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=60_000)
    assert page.locator(".swagger-ui .opblock").count() >= 10
    page.goto(explorer.url + "/redoc")
    page.wait_for_function("() => document.querySelectorAll('[data-section-id]').length >= 10", timeout=60_000)
    assert not refused, refused


def _titles_and_pictures(page: Any, cards: str) -> None:
    titles = page.eval_on_selector_all(f"{cards} .card-title", "els => els.map(e => e.textContent.trim())")
    assert titles and all(titles), titles
    total, ok = _images_loaded(page, f"{cards} img.thumb")
    assert total >= len(titles) and ok == total


def test_first_hour_walk_through(page: Any, explorer: ExplorerServer) -> None:
    """What a newcomer does after `make demo`: home, a search, an item, a user, a like; every page shows pictures
    and titles, recommendation cards say why in the words of the event and show no raw ranker score."""
    page.goto(explorer.url + "/")
    _titles_and_pictures(page, "#results .card")
    page.fill("#q", "blue")
    page.click("#search-button")
    page.wait_for_url("**/?q=blue*")
    _titles_and_pictures(page, "#results .card")
    page.locator("#results .card a.card-title").first.click()
    page.wait_for_selector("#item-title")
    assert page.inner_text("#item-title").strip()
    _titles_and_pictures(page, "#similar .card")
    assert all(t.startswith("match ") for t in page.eval_on_selector_all(
        "#similar .card .score", "els => els.map(e => e.textContent.trim())"))
    page.goto(explorer.url + "/")
    page.click(".users li:first-child a")
    page.wait_for_selector("#user-id")
    _titles_and_pictures(page, "#recs .card")
    assert page.locator("#recs .card .score").count() == 0  # a ranker's score means nothing to a reader
    because = page.eval_on_selector_all("#recs .because span", "els => els.map(e => e.textContent)")
    assert because and all(("like an item you" in b) or ("you " in b and " this " in b) for b in because), because
    first = _ids(page, "#recs .card")[0]
    page.click(f"#recs .card[data-item-id='{first}'] button.like")
    page.wait_for_selector("#live[data-version='1']")
    assert first not in _ids(page, "#recs .card")  # a liked item is never a new pick
    assert first in _ids(page, "#history .card")
    assert not page.errors, page.errors


def test_an_item_opened_from_a_user_page_is_liked_as_that_user(page: Any, explorer: ExplorerServer) -> None:
    _open_first_card(page, explorer.url + "/users/browser-visitor-8", "#recs .card")
    assert page.input_value(".like-as input[name=user_id]") == "browser-visitor-8"  # not "visitor"
    assert not page.errors, page.errors


def test_failed_likes_show_one_message(page: Any, explorer: ExplorerServer) -> None:
    """Each failed click replaces the message of the one before, instead of stacking them up."""
    page.route("**/feedback", lambda route: route.fulfill(
        status=503, content_type="text/html", body='<p id="error-message">the database is busy</p>'))
    page.goto(explorer.url + "/users/browser-visitor-9")
    button = page.locator("#recs .card button.like").first
    for _ in range(3):
        button.click()
        page.wait_for_selector("#live:not(.busy) > p.warn")
        page.wait_for_function("() => !document.querySelector('#recs .card button.like').disabled")
    assert page.locator("#live > p.warn").count() == 1
    assert "the database is busy" in page.inner_text("#live > p.warn")


def test_long_unbroken_text_wraps_instead_of_widening_the_page(page: Any, explorer: ExplorerServer) -> None:
    """A 5,000-character title and a one-word 300-character query stay within the window. (Last in the file: it
    adds an item to the shared server, and deletes it again.)"""
    import httpx

    item = explorer.url + "/v1/items/browser-long-title"
    r = httpx.put(item, json={"title": "W" * 5000, "description": "word " * 400 + "x" * 3000, "category": "y" * 200},
                  timeout=120)
    assert r.status_code == 200, r.text
    try:
        for url in ("/items/browser-long-title", "/?q=" + "z" * 300):
            page.goto(explorer.url + url)
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (url, width)
    finally:
        httpx.delete(item, timeout=60)
