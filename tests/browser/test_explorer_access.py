"""The explorer for keyboard, screen-reader and phone users, in headless Chromium over the built demo: a like keeps the
focus and is announced, failures say what to do, a search says it is under way, and a 375 px screen shows the Search
button. Requests are held or failed with Playwright routes, so nothing here waits on a clock."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ExplorerServer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_search_button_fits_a_phone_screen(browser: Any, explorer: ExplorerServer) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(120_000)
        for url in ("/", "/?q=red+dress"):
            page.goto(explorer.url + url)
            width = page.evaluate("document.documentElement.scrollWidth")
            box = page.locator("#search-button").bounding_box()
            assert width <= 375 and box and box["x"] >= 0 and box["x"] + box["width"] <= 375, (url, width, box)
        screenshot(page, "mobile-home")
    finally:
        context.close()


def test_a_keyboard_like_keeps_the_focus_and_is_announced(page: Any, explorer: ExplorerServer) -> None:
    held: list[Any] = []
    page.route("**/feedback", lambda route: held.append(route))  # answered below, once the busy state was seen
    page.goto(explorer.url + "/users/browser-access-1")
    names = page.eval_on_selector_all("#recs button.like", "els => els.map(b => b.getAttribute('aria-label'))")
    titles = page.eval_on_selector_all("#recs .card-title", "els => els.map(e => e.textContent.trim())")
    assert names == [f"Like {t}" for t in titles]  # one name per button, not 24 times "♥ Like"
    page.locator("#recs .card button.like").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('live').getAttribute('aria-busy') === 'true'")
    held[0].continue_()
    page.wait_for_selector("#live[data-version='1']:not([aria-busy])")
    assert "recommendations updated" in page.inner_text("#announce")  # a live region that was there before
    focused = page.evaluate("[document.activeElement.tagName, document.activeElement.closest('#recs') !== null]")
    assert focused == ["BUTTON", True]  # not back at the top of the page
    fresh = page.eval_on_selector_all("#recs .card.fresh", "els => els.map(c => c.innerText)")
    assert all(text.startswith("new") for text in fresh)  # said in words, not only by the green ring
    assert not page.errors, page.errors


def test_failed_likes_say_what_to_do(page: Any, explorer: ExplorerServer) -> None:
    page.route("**/feedback", lambda route: route.abort("connectionrefused"))
    page.goto(explorer.url + "/users/browser-access-2")
    button = page.locator("#recs .card button.like").first
    button.click()
    page.wait_for_selector("#live:not(.busy) > p.warn[role=alert]")
    assert "did not answer: is `recsys serve` (or `make demo`) still running?" in page.inner_text("#live > p.warn")
    page.unroute("**/feedback")
    page.route("**/feedback", lambda route: route.fulfill(status=502, content_type="text/plain", body="Bad Gateway"))
    page.wait_for_function("() => !document.querySelector('#recs .card button.like').disabled")
    button.click()
    page.wait_for_selector("#live:not(.busy) > p.warn:has-text('502')")
    assert "try again" in page.inner_text("#live > p.warn") and "HTTP 502" not in page.inner_text("#live > p.warn")


def test_a_search_says_it_is_under_way(page: Any, explorer: ExplorerServer) -> None:
    """The first search after a start loads the text model (seconds): the form says it is searching. The page's
    own listener runs first; one added here on the window then keeps the page, so its state can be read."""
    page.goto(explorer.url + "/")
    page.evaluate("window.addEventListener('submit', e => e.preventDefault())")
    page.fill("#q", "striped")
    page.click("#search-button")
    page.wait_for_function("document.querySelector('form.big-search').getAttribute('aria-busy') === 'true'"
                           " && document.getElementById('search-button').disabled")
    assert "Searching" in page.inner_text("#search-status") and "Searching" in page.inner_text("#search-button")
    page.goto(explorer.url + "/?q=striped")  # the results page itself is not busy
    assert page.get_attribute("form.big-search", "aria-busy") is None and page.inner_text("#search-button") == "Search"


def test_keyboard_path_to_the_first_like(page: Any, explorer: ExplorerServer) -> None:
    """A skip link first, past the header's forms; one tab stop per card (the picture links where the title does:
    a history of 24 cards took 48 stops, 63 to the first Like)."""
    page.goto(explorer.url + "/users/" + _busy_user(page, explorer))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null && !document.activeElement.closest('header')")
    cards = page.locator("#history .card").count()
    tabbable = page.eval_on_selector_all("#history a", "els => els.filter(a => a.tabIndex >= 0).length")
    assert cards > 0 and tabbable == cards
    per_card = page.eval_on_selector_all("#recs .card", "els => els.map(c => Array.from(c.querySelectorAll('a'))"
                                         ".filter(a => a.tabIndex >= 0).map(a => a.getAttribute('href')))")
    assert per_card and all(len(set(hrefs)) == len(hrefs) for hrefs in per_card)  # no two stops to one page


def _busy_user(page: Any, explorer: ExplorerServer) -> str:
    page.goto(explorer.url + "/")
    return str(page.eval_on_selector(".users li:first-child a", "a => a.textContent"))
