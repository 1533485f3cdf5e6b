"""The explorer's routes without a browser (fast): pages render over the in-memory fake, images are served only from
the media recorded for an item, form posts from other sites and unknown keys are refused, output is escaped."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from recsys.api import create_app
from recsys.api.auth import create_key, revoke_key
from recsys.api.testing import FakeRecommender
from recsys.api.web.pages import sniff
from recsys.config import Settings
from recsys.store import Store


def _png(path: Path, colour: str = "red") -> Path:
    Image.new("RGB", (8, 8), colour).save(path, format="PNG")
    return path


@pytest.fixture
def fake(sqlite_store: Store, tmp_path: Path) -> FakeRecommender:
    media = tmp_path / "media"
    media.mkdir()
    (media / "notes.png").write_text("not an image")
    (media / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')

    def item(i: int, category: str, **extra: Any) -> dict[str, Any]:
        return {"item_id": f"{category[0]}{i}", "title": f"{category} {i}", "category": category, "price": 10.0 * i,
                "media": [{"kind": "image", "uri": str(_png(media / f"{category}{i}.png")), "status": "ok",
                           "error": None}], **extra}

    items = [item(i, "shoes") for i in range(1, 6)] + [item(i, "hats") for i in range(1, 6)]
    items += [
        {"item_id": "text-as-png", "title": "x", "media": [{"kind": "image", "uri": str(media / "notes.png"),
                                                            "status": "ok", "error": None}]},
        {"item_id": "svg", "title": "x", "media": [{"kind": "image", "uri": str(media / "logo.svg"), "status": "ok",
                                                    "error": None}]},
        {"item_id": "relative", "title": "x", "media": [{"kind": "image", "uri": "../../etc/passwd", "status": "ok",
                                                         "error": None}]},
        {"item_id": "passwd", "title": "x", "media": [{"kind": "image", "uri": "/etc/passwd", "status": "ok",
                                                       "error": None}]},
        {"item_id": "remote", "title": "x", "media": [{"kind": "image", "uri": "https://example.org/a.jpg",
                                                       "status": "ok", "error": None}]},
        {"item_id": "broken", "title": "x", "media": [{"kind": "image", "uri": str(media / "shoes1.png"),
                                                       "status": "error", "error": "cannot decode"}]},
        {"item_id": "hidden", "title": "x", "hidden": True, "media": [{"kind": "image",
                                                                       "uri": str(media / "shoes1.png"),
                                                                       "status": "ok", "error": None}]},
        {"item_id": "xss", "title": "<script>alert('x')</script>", "category": "hats"},
        {"item_id": "gone", "title": "gone", "deleted": True, "media": [{"kind": "image",
                                                                         "uri": str(media / "shoes1.png"),
                                                                         "status": "ok", "error": None}]},
        {"item_id": "mixed", "title": "x", "media": [
            {"kind": "image", "uri": str(media / "notes.png"), "status": "error", "error": "cannot decode"},
            {"kind": "image", "uri": str(media / "shoes2.png"), "status": "ok", "error": None}]},
    ]
    return FakeRecommender(sqlite_store, items)


@pytest.fixture
def make_client(tmp_path: Path, fake: FakeRecommender) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**api: Any) -> TestClient:
        s = Settings(home=tmp_path / "home")
        s.api = s.api.model_copy(update={"auth": False, "rate_limit_per_minute": 0,
                                         "media_roots": [tmp_path / "media"], **api})
        # A browser names the page's origin on every form post.
        c = TestClient(create_app(s, fake), raise_server_exceptions=True, headers={"Origin": "http://testserver"})
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def test_pages_render(client: TestClient) -> None:
    for url in ("/", "/?q=shoes", "/?q=hat&category=hats&price_max=30&in_stock=true", "/items/s1",
                "/items/s1?modality=text", "/users/u1", "/users/u1?fragment=1", "/login"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["x-content-type-options"] == "nosniff"
    assert 'src="/media/s1?n=0"' in client.get("/items/s1").text


def test_errors_are_pages_with_the_right_status(client: TestClient) -> None:
    r = client.get("/items/nope")
    assert r.status_code == 404 and "error-message" in r.text
    assert client.get("/?price_min=cheap").status_code == 422
    assert client.get("/?modality=smell").status_code == 422
    assert client.get("/users/?user=u7", follow_redirects=False).headers["location"] == "/users/u7"


def test_output_is_escaped(client: TestClient) -> None:
    text = client.get("/items/xss").text
    assert "<script>alert('x')</script>" not in text and "&lt;script&gt;" in text


def test_feedback_stores_the_event_and_reranks(client: TestClient, fake: FakeRecommender) -> None:
    r = client.post("/feedback", data={"user_id": "u1", "item_id": "h2", "type": "like"},
                    headers={"X-Explorer": "fetch"})
    assert r.status_code == 200 and 'id="recs"' in r.text and "You liked" in r.text
    assert ("h2", "like") in [tuple(e) for e in fake.events["u1"]]
    plain = client.post("/feedback", data={"user_id": "u1", "item_id": "h3", "type": "dislike"},
                        follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"].startswith("/users/u1")
    assert client.post("/feedback", data={"user_id": "u1", "item_id": "h3", "type": "purchase"}).status_code == 422


def test_cross_site_posts_are_refused(client: TestClient, fake: FakeRecommender) -> None:
    data = {"user_id": "u2", "item_id": "h2", "type": "like"}
    assert client.post("/feedback", data=data, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/feedback", data=data, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post("/feedback", data=data, headers={"Origin": "null"}).status_code == 403  # sandboxed, data:
    bare = TestClient(client.app, raise_server_exceptions=True)  # no Origin and no Referer
    assert bare.post("/feedback", data=data).status_code == 403
    assert bare.post("/feedback", data=data, headers={"Referer": "http://evil.example/x"}).status_code == 403
    assert not fake.events.get("u2")
    assert bare.post("/feedback", data=data, headers={"Referer": "http://testserver/users/u2"},
                     follow_redirects=False).status_code == 303
    same = client.post("/feedback", data=data, headers={"Origin": "http://testserver",
                                                        "Sec-Fetch-Site": "same-origin"}, follow_redirects=False)
    assert same.status_code == 303


def test_media_serves_recorded_images_only(client: TestClient) -> None:
    r = client.get("/media/s1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff" and r.content.startswith(b"\x89PNG")
    for item in ("text-as-png", "svg", "relative", "passwd", "broken", "hidden", "xss", "nope"):
        assert client.get(f"/media/{item}").status_code == 404, item
    for url in ("/media/s1?n=1", "/media/..%2F..%2Fetc%2Fpasswd", "/media/../../etc/passwd",
                "/media/%2Fetc%2Fpasswd", "/media/s1/../../etc/passwd"):
        r = client.get(url)
        assert r.status_code in (404, 422) and b"root:" not in r.content, url
    remote = client.get("/media/remote", follow_redirects=False)
    assert remote.status_code == 307 and remote.headers["location"] == "https://example.org/a.jpg"


def test_static_files_are_a_fixed_list(client: TestClient) -> None:
    assert client.get("/explorer/static/explorer.js").status_code == 200
    assert client.get("/explorer/static/explorer.css").headers["content-type"].startswith("text/css")
    for name in ("pages.py", "..%2Fpages.py", "..%2F..%2Froutes%2Fweb.py"):
        assert client.get(f"/explorer/static/{name}").status_code == 404


def test_sniff_allow_list(tmp_path: Path) -> None:
    assert sniff(b"\xff\xd8\xff\xe0" + b"\0" * 12) == "image/jpeg"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff(b"GIF89a" + b"\0" * 10) == "image/gif"
    assert sniff(b"<svg xmlns=...") is None and sniff(b"<html>") is None and sniff(b"") is None


def test_with_auth_on_the_pages_need_a_key(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    client = make_client(auth=True)
    r = client.get("/users/u1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/users/u1"
    assert "Log out" not in client.get("/login").text  # nobody is logged in yet
    assert client.get("/media/s1").status_code == 401
    assert client.post("/login", data={"key": "rsk_wrong", "next": "/"}).status_code == 401
    read, _ = create_key(sqlite_store, "reader", "read")
    r = client.post("/login", data={"key": read, "next": "//evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "max-age=43200" in cookie.lower()
    assert read not in cookie and read not in str(client.cookies.values())  # the key itself is never in a cookie
    assert client.get("/users/u1").status_code == 200 and "Log out" in client.get("/users/u1").text
    assert client.get("/media/s1").status_code == 200
    assert client.post("/feedback", data={"user_id": "u1", "item_id": "h2", "type": "like"}).status_code == 403
    admin, _ = create_key(sqlite_store, "admin", "admin")
    assert client.post("/login", data={"key": admin, "next": "/"}, follow_redirects=False).status_code == 303
    assert client.post("/feedback", data={"user_id": "u1", "item_id": "h2", "type": "like"},
                       follow_redirects=False).status_code == 303


def test_login_sessions_are_signed_expire_and_end_with_the_key(make_client: Callable[..., TestClient],
                                                               sqlite_store: Store) -> None:
    client = make_client(auth=True, session_hours=1)
    read, _ = create_key(sqlite_store, "reader", "read")
    assert client.post("/login", data={"key": read, "next": "/"}, follow_redirects=False).status_code == 303
    assert client.get("/users/u1").status_code == 200
    value = client.cookies["recsys_session"]
    name, expiry, mac = value.split(".")
    for forged in (f"{name}.{int(expiry) + 3600}.{mac}", f"YWRtaW4.{expiry}.{mac}", "x", f"{name}.1.{mac}", read):
        client.cookies.clear()
        client.cookies.set("recsys_session", forged)
        assert client.get("/users/u1", follow_redirects=False).status_code == 303, forged  # back to the login
    client.cookies.clear()
    client.cookies.set("recsys_session", value)
    assert client.get("/users/u1").status_code == 200
    revoke_key(sqlite_store, "reader")
    assert client.get("/users/u1", follow_redirects=False).status_code == 303  # the key's sessions end with it


def test_a_faint_look_alike_is_not_shown_as_the_reason() -> None:
    """"Like an item you viewed" beside a 0.09 cosine convinced nobody: below MIN_BECAUSE the card keeps its source
    tags alone; a repeat and a real look-alike keep their reason."""
    from recsys.api.web.pages import result_cards
    from recsys.serving.reasons import MIN_BECAUSE

    class Rec:
        def get_item(self, item_id: str) -> dict[str, Any]:
            return {"item_id": item_id, "title": f"title {item_id}"}

    def result(item_id: str, **explanation: Any) -> dict[str, Any]:
        return {"item_id": item_id, "score": 1.0, "sources": ["trending"],
                "explanation": {"because_of": "h1", **explanation}}

    cards = result_cards(Rec(), [result("a", reason="similar", similarity=0.09),
                                 result("b", reason="similar", similarity=MIN_BECAUSE + 0.01),
                                 result("c", reason="repeat", similarity=1.0)])
    assert [c.because_of.item_id if c.because_of else None for c in cards] == [None, "h1", "h1"]
    assert cards[0].sources == ["trending"]


def test_removed_items_show_as_removed_and_without_a_broken_picture(client: TestClient, sqlite_store: Store) -> None:
    """A deleted item's page is the API's 404; a hidden one says so and has no Like form; their cards in a history
    have no picture (``/media`` refuses both) but say they are no longer available."""
    gone = client.get("/items/gone")
    assert gone.status_code == 404 and "was deleted" in gone.text and 'id="error-message"' in gone.text
    hidden = client.get("/items/hidden")
    assert hidden.status_code == 200 and 'id="item-removed"' in hidden.text and "hidden" in hidden.text
    assert 'action="/feedback"' not in hidden.text and 'src="/media/hidden' not in hidden.text
    _store_history(sqlite_store, "u5", ["hidden", "gone", "s1"])  # histories are read from the store
    page = client.get("/users/u5").text
    assert 'src="/media/hidden' not in page and 'src="/media/gone' not in page
    history = page.split('id="history"')[1].split('id="recs"')[0]
    assert history.count('class="card small"') == 3 and 'src="/media/s1"' in history
    assert history.count("no longer available") == 2 and "hidden: no longer available" in history


def _store_history(store: Store, user_id: str, items: list[str]) -> None:
    from recsys.store.events import ingest_events
    from recsys.store.importers.records import ItemRecord
    from recsys.store.importers.report import TableCounts
    from recsys.store.importers.writer import upsert_items

    with store.session() as s:
        upsert_items(s, [ItemRecord(i, i, "", None) for i in items], TableCounts())
    results = ingest_events(store, [{"user_id": user_id, "item_id": i, "type": "like"} for i in items])
    assert all(r.status == "stored" for r in results)


def test_item_page_names_only_images_that_are_served(client: TestClient) -> None:
    """The gallery numbers the images as /media does (failed ones left out): no ``None?n=0``, no 404s."""
    broken = client.get("/items/broken").text
    assert "None?n=" not in broken and 'class="hero"' not in broken and "media problem" in broken
    mixed = client.get("/items/mixed").text
    sources = re.findall(r'src="([^"]+\?n=\d+)"', mixed)
    assert sources == ["/media/mixed?n=0"]
    assert all(client.get(src).status_code == 200 for src in sources)


def test_image_search_without_a_file_says_so(client: TestClient, tmp_path: Path) -> None:
    """Browsers send an empty part when no file was chosen: the explorer's own message, on the HTML error page."""
    r = client.post("/search/image", files={"image": ("", b"", "application/octet-stream")},
                    data={"category": "hats", "price_min": ""})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "choose an image file" in r.text and 'id="error-message"' in r.text
    assert 'id="image-file" required' in client.get("/").text
    found = client.post("/search/image", files={"image": ("red.png", (tmp_path / "media" / "shoes1.png").read_bytes(),
                                                          "image/png")}, data={"category": "hats"})
    assert found.status_code == 200 and "Looks like red.png" in found.text and 'data-item-id="h1"' in found.text


@pytest.mark.parametrize("url", [
    "/users/u1?diversity=2", "/users/u1?diversity=abc", "/users/u1?fragment=maybe", "/?q=" + "x" * 2001,
    "/?price_min=" + "1" * 65, "/?modality=verylongmod", "/?" + "&".join(f"category=c{i}" for i in range(201)),
    "/items/s1?user=" + "u" * 200, "/media/s1?n=-1", "/login?next=/" + "x" * 2001])
def test_bad_query_values_get_the_error_page(client: TestClient, url: str) -> None:
    """A value outside a page's declared limits (a hand-edited or pasted link) is the HTML error page, with the
    API's 422 and the value named, never the API's JSON problem."""
    r = client.get(url)
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    assert 'id="error-message"' in r.text and r.headers["x-frame-options"] == "DENY"


def test_bad_form_values_get_the_error_page(client: TestClient) -> None:
    r = client.post("/feedback", data={"user_id": "u1", "item_id": "h2", "diversity": "5"})
    assert r.status_code == 422 and 'id="error-message"' in r.text and "diversity" in r.text
    assert client.get("/v1/items/s1?x=1", headers={"X-API-Key": "k"}).headers["content-type"].startswith(
        "application/json")  # the API keeps its JSON


def test_login_comes_back_to_the_page_with_its_query(make_client: Callable[..., TestClient],
                                                     sqlite_store: Store) -> None:
    client = make_client(auth=True)
    r = client.get("/?q=red&category=hats&category=a%26b", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/%3Fq%3Dred%26category%3Dhats%26category%3Da%2526b"
    form = client.get(r.headers["location"]).text
    assert 'name="next" value="/?q=red&amp;category=hats&amp;category=a%26b"' in form
    read, _ = create_key(sqlite_store, "reader", "read")
    done = client.post("/login", data={"key": read, "next": "/?q=red&category=hats&category=a%26b"},
                       follow_redirects=False)
    assert done.headers["location"] == "/?q=red&category=hats&category=a%26b"
    client.cookies.clear()
    too_long = client.get("/users/u1?category=" + "c" * 3000, follow_redirects=False)
    assert too_long.headers["location"] == "/login?next=/users/u1"  # the page, without a query no login keeps


def test_items_opened_from_a_user_page_are_liked_as_that_user(client: TestClient) -> None:
    """Cards on a user's page link to the item page with the user, whose "Like as user" field then holds them."""
    assert client.post("/feedback", data={"user_id": "a b", "item_id": "h1", "type": "like"},
                       follow_redirects=False).status_code == 303
    page = client.get("/users/a%20b").text
    links = set(re.findall(r'href="(/items/[^"]+)"', page))
    assert links and all(link.endswith("?user=a%20b") for link in links), links
    item = client.get("/items/h2?user=a%20b").text
    assert 'name="user_id" value="a b"' in item
    assert 'href="/items/h3?user=a%20b"' in item  # and on from there, through the similar items
    assert 'name="user_id" value="visitor"' in client.get("/items/h2").text


def test_user_ids_are_trimmed_as_the_store_keeps_them(client: TestClient, fake: FakeRecommender) -> None:
    r = client.post("/feedback", data={"user_id": " u9 ", "item_id": "h1", "type": "like"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/users/u9?")
    assert fake.events["u9"] == [("h1", "like")] and " u9 " not in fake.events
    spaced = client.get("/users/%20u9%20?diversity=0.3", follow_redirects=False)
    assert spaced.status_code == 303 and spaced.headers["location"] == "/users/u9?diversity=0.3"
    assert 'id="user-id">u9</span>' in client.get("/users/%20u9%20").text
    assert client.post("/feedback", data={"user_id": "  ", "item_id": "h1", "type": "like"}).status_code == 422


def test_a_login_session_opens_every_footer_link(make_client: Callable[..., TestClient], sqlite_store: Store) -> None:
    """A pasted key with a trailing space logs in (as the same key in a header works); the footer's links, the
    status page among them, open with the login cookie."""
    client = make_client(auth=True)
    admin, _ = create_key(sqlite_store, "admin", "admin")
    r = client.post("/login", data={"key": admin + " \n", "next": "/"}, follow_redirects=False)
    assert r.status_code == 303 and "recsys_session=" in r.headers["set-cookie"]
    footer = client.get("/").text.split("<footer>")[1]
    links = re.findall(r'href="([^"]+)"', footer)
    assert "/status" in links
    for link in links:
        assert client.get(link).status_code == 200, link
    assert 'id="status"' in client.get("/status").text


def test_favicon_is_not_an_error(client: TestClient) -> None:
    assert client.get("/favicon.ico").status_code == 204


def test_plot_labels_are_cut_before_they_are_escaped() -> None:
    from recsys.api.web.plots import interval_bars

    rate = {"rate": 0.1, "low": 0.05, "high": 0.2}
    svg = interval_bars([{"name": "R&D<new>&more-variant", "ctr": rate, "control": True}], "ctr", "CTR")
    assert ">R&amp;D&lt;new&gt;&amp;more-va</text>" in svg
