"""The explorer audit's fixes that only a browser shows: Back from an image-search result, likes sent one at a time
and a hung like given up, long ids on a phone. Requests are held with Playwright routes and time is the page's fake
clock: nothing waits on a real one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ExplorerServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HEX = "f1c3b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1"
"""A mistyped 64-hex shopper or item id (H&M's format): one word with nowhere to wrap."""


def _ids(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.itemId)")  # type: ignore[no-any-return]


def test_back_from_an_image_search_result_shows_the_results(page: Any, explorer: ExplorerServer,
                                                            demo_dir: Path) -> None:
    """D1: the results of a form post come back on Back, not as "Confirm Form Resubmission" (ERR_CACHE_MISS)."""
    page.goto(explorer.url + "/")
    page.set_input_files("#image-file", str(sorted((demo_dir / "images").glob("*.png"))[0]))
    page.click("#image-button")
    page.wait_for_selector("#results .card")
    results = _ids(page, "#results .card")
    page.locator("#results .card a.card-title").first.click()
    page.wait_for_selector("#item-title")
    page.go_back()
    page.wait_for_selector("#results .card")
    assert page.inner_text("#results-title").startswith("Looks like 00001.png")
    assert _ids(page, "#results .card") == results


def test_likes_are_sent_one_at_a_time(page: Any, explorer: ExplorerServer) -> None:
    """D4: a like pressed (keyboard) while another is on its way waits for it, so its answer, with both likes, is
    the last one shown: never an older list over a newer one."""
    held: list[Any] = []
    released = False

    def hold(route: Any) -> None:
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route("**/feedback", hold)
    page.goto(explorer.url + "/users/browser-fixes-4")
    page.evaluate("""() => {
        window.posts = 0;
        const send = window.fetch;
        window.fetch = function () { window.posts += 1; return send.apply(this, arguments); };
    }""")
    first, second = _ids(page, "#recs .card")[:2]
    page.click(f"#recs .card[data-item-id='{first}'] button.like")
    page.focus(f"#recs .card[data-item-id='{second}'] button.like")  # the dimmed list stops only the mouse
    page.keyboard.press("Enter")
    assert page.evaluate("window.posts") == 1  # the second waits for the first's answer
    released = True
    for route in held:
        route.continue_()
    page.wait_for_selector("#live[data-version='2']")
    history = _ids(page, "#history .card")
    assert first in history and second in history, history
    assert second not in _ids(page, "#recs .card") and page.evaluate("window.posts") == 2


def test_a_like_that_hangs_is_given_up(page: Any, explorer: ExplorerServer) -> None:
    """D4: a like the server (or a proxy) never answers is given up after 30 s: the list is usable again and says
    that the like may still be stored."""
    page.clock.install()
    page.route("**/feedback", lambda route: None)  # held for ever
    page.goto(explorer.url + "/users/browser-fixes-4b")
    page.locator("#recs .card button.like").first.click()
    page.wait_for_selector("#live.busy")
    page.clock.run_for(31_000)
    page.wait_for_selector("#live > p.warn")
    assert "did not answer within 30 s" in page.inner_text("#live > p.warn")
    assert page.evaluate("document.getElementById('live').classList.contains('busy')") is False
    assert page.locator("#recs .card button.like").first.is_enabled()


def test_long_ids_wrap_on_a_phone(browser: Any, explorer: ExplorerServer) -> None:
    """D5: the login page, a mistyped 64-hex shopper's hint and the error page quoting a 64-character item id are
    no wider than a 375 or 320 px phone."""
    context = browser.new_context(viewport={"width": 375, "height": 700})
    try:
        page = context.new_page()
        page.set_default_timeout(120_000)
        for width in (375, 320):
            page.set_viewport_size({"width": width, "height": 700})
            for url in ("/login", f"/users/{HEX}", f"/items/{HEX}"):
                page.goto(explorer.url + url)
                widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert widths[0] <= widths[1] == width, (url, widths)
    finally:
        context.close()
