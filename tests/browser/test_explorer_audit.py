"""What a browser audit of the explorer found, checked in headless Chromium where only a browser can tell: Back after a
like shows the like, the Diversity list waits for Apply and keeps the focus, long categories fit a phone, a like
without JavaScript is focused, an undecodable picture becomes the "no image" tile, an expired login offers a link.
Requests are failed or answered with Playwright routes: nothing waits on a clock."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ExplorerServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _ids(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.itemId)")  # type: ignore[no-any-return]


def _first_item(page: Any, explorer: ExplorerServer) -> str:
    page.goto(explorer.url + "/")
    return str(_ids(page, "#results .card")[0])


def test_back_after_a_like_shows_the_like(page: Any, explorer: ExplorerServer) -> None:
    """D1: the user page is not taken from the browser's cache: its history has the like, its list not the item."""
    page.goto(explorer.url + "/users/browser-audit-1")
    liked = _ids(page, "#recs .card")[0]
    page.click(f"#recs .card[data-item-id='{liked}'] button.like")
    page.wait_for_selector("#live[data-version='1']")
    page.locator("#recs .card a.card-title").first.click()
    page.wait_for_selector("#item-title")
    page.go_back()
    page.wait_for_function(f"() => !!document.querySelector(\"#history .card[data-item-id='{liked}']\")")
    assert liked not in _ids(page, "#recs .card")
    assert page.locator(f"#recs .card[data-item-id='{liked}'] button.like").count() == 0


def test_diversity_waits_for_apply_and_keeps_the_focus(page: Any, explorer: ExplorerServer) -> None:
    """D5 (WCAG 3.2.2): arrow keys only change the choice; Apply reloads, and the focus is back on the list."""
    loads: list[str] = []
    page.on("request", lambda r: loads.append(r.url) if r.is_navigation_request() else None)
    page.goto(explorer.url + "/users/browser-audit-5")
    page.focus("select[name=diversity]")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "diversity-apply"
    page.keyboard.press("Enter")
    page.wait_for_url("**/users/browser-audit-5?diversity=0.6#diversity")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'diversity'")
    assert page.input_value("select[name=diversity]") == "0.6"
    assert [u.split("/users/", 1)[1] for u in loads] == ["browser-audit-5", "browser-audit-5?diversity=0.6"]


def test_long_categories_fit_a_phone(browser: Any, explorer: ExplorerServer) -> None:
    """D6: a 200-character category in the filter list widens no page at 375 or 320 px."""
    context = browser.new_context(viewport={"width": 375, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(120_000)
        item = _first_item(page, explorer)
        for width in (375, 320):
            page.set_viewport_size({"width": width, "height": 800})
            for url in ("/", "/users/browser-audit-6", f"/items/{item}"):
                page.goto(explorer.url + url)
                widths = page.evaluate("""() => {
                    const option = document.createElement('option');
                    option.textContent = 'a very long category name '.repeat(8);
                    document.querySelector('form.filters select[name=category]').append(option);
                    return [document.documentElement.scrollWidth, window.innerWidth];
                }""")
                assert widths[0] <= widths[1] == width, (url, widths)
    finally:
        context.close()


def test_a_like_from_an_item_page_is_focused_on_the_user_page(page: Any, explorer: ExplorerServer) -> None:
    """D8: the plain form post reloads the user page with the message focused, so a screen reader reads it."""
    item = _first_item(page, explorer)
    page.goto(f"{explorer.url}/items/{item}?user=browser-audit-8")
    page.click(".like-as button.like")
    page.wait_for_url("**/users/browser-audit-8?liked=*")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'flash'")
    assert "You liked" in page.inner_text("#flash")


def test_an_undecodable_picture_is_the_no_image_tile(page: Any, explorer: ExplorerServer) -> None:
    """D10: a picture the browser cannot decode (no media status recorded yet) is no broken-image icon."""
    item = _first_item(page, explorer)
    page.route("**/media/**", lambda route: route.fulfill(status=200, content_type="image/jpeg",
                                                          body=b"\xff\xd8\xff\xe0 truncated"))
    page.goto(f"{explorer.url}/items/{item}")
    page.wait_for_function("() => !document.querySelector('.gallery img')")
    title = page.inner_text("#item-title").strip()
    label = page.get_attribute(".gallery .noimg[role=img]", "aria-label")
    assert label and label.startswith("no image: ") and title in label
    assert page.evaluate("Array.from(document.images).filter(i => i.complete && !i.naturalWidth).length") == 0
    assert not page.errors, page.errors


def test_a_like_after_the_login_expired_offers_the_login(page: Any, explorer: ExplorerServer) -> None:
    """D3: the error page's login link (the server's answer to a like without a session) is shown with the message."""
    page.route("**/feedback", lambda route: route.fulfill(status=401, content_type="text/html", body=(
        '<p id="error-message">your login session has expired: log in again</p>'
        '<a id="login-link" href="/login?next=/users/browser-audit-3">Log in again</a>')))
    page.goto(explorer.url + "/users/browser-audit-3")
    page.locator("#recs .card button.like").first.click()
    page.wait_for_selector("#live > p.warn a#login-again")
    assert "session has expired" in page.inner_text("#live > p.warn")
    assert page.get_attribute("#login-again", "href") == "/login?next=/users/browser-audit-3"
