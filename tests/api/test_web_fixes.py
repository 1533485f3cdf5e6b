"""The explorer audit's fixes that show without a browser: image-search results kept for Back by this browser only,
a form over the body limit answered with the explorer's page (the API keeps its JSON), and the user page's list
ranked as the API serves it (experiment variant, shown items left out)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image
from starlette.requests import Request

from recsys.api.testing import FakeRecommender
from recsys.api.web import pages
from recsys.config import ExperimentsSettings

ORIGIN = {"Origin": "http://testserver"}
AB = {"name": "ab", "variants": [{"name": "control", "share": 0.5},
                                 {"name": "hats", "share": 0.5, "diversity": 0.2, "pins": {"s8": 1}}]}


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, format="PNG")
    return out.getvalue()


def _message(html: str) -> str:
    found = re.search(r'id="error-message">([^<]*)<', html)
    assert found, html[:300]
    return found.group(1)


def test_image_search_results_are_kept_for_back_by_this_browser_only(client: TestClient) -> None:
    """D1: the results of a search by image may be shown again from this browser's cache (Back from a result), never
    from a shared one; every other page, the like's fragment and a refused upload stay no-store."""
    found = client.post("/search/image", files={"image": ("red.png", _png(), "image/png")}, headers=ORIGIN)
    assert found.status_code == 200 and "Looks like" in found.text
    assert found.headers["cache-control"] == "private, no-cache"
    empty = client.post("/search/image", files={"image": ("", b"", "application/octet-stream")}, headers=ORIGIN)
    assert empty.status_code == 422 and empty.headers["cache-control"] == "no-store"
    liked = client.post("/feedback", data={"user_id": "u1", "item_id": "s1"}, headers={**ORIGIN, "X-Explorer": "fetch"})
    assert liked.status_code == 200 and liked.headers["cache-control"] == "no-store"
    assert client.get("/").headers["cache-control"] == "no-store"


def test_a_form_over_the_body_limit_is_the_explorers_page(make_client: Callable[..., TestClient]) -> None:
    """D2: over ``api.max_body_bytes`` (declared, or streamed without a length), an explorer form gets the error page
    with the explorer's words; the API's routes keep their JSON problem."""
    client = make_client(max_body_bytes=5_000, max_image_bytes=2_000)
    big = {"image": ("photo.jpg", b"\xff\xd8\xff" + b"x" * 9_000, "image/jpeg")}
    declared = client.post("/search/image", files=big, headers=ORIGIN)
    assert declared.status_code == 413 and declared.headers["content-type"].startswith("text/html")
    assert _message(declared.text) == "the uploaded image is over the limit of 2000 bytes"

    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + b"x" * 9_000 + f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield from (body[i:i + 1_000] for i in range(0, len(body), 1_000))

    streamed = client.post("/search/image", content=chunks(),
                           headers={**ORIGIN, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert streamed.status_code == 413 and streamed.headers["content-type"].startswith("text/html")
    assert _message(streamed.text) == "the uploaded image is over the limit of 2000 bytes"

    login = client.post("/login", data={"key": "k" * 400, "next": "/" + "x" * 6_000}, headers=ORIGIN)
    assert login.status_code == 413 and "RECSYS_API__MAX_BODY_BYTES" in _message(login.text)
    api = client.post("/v1/search/image", files=big)
    assert api.status_code == 413 and api.headers["content-type"] == "application/problem+json"


def _request(client: TestClient) -> Request:
    return Request({"type": "http", "app": client.app, "method": "GET", "path": "/", "headers": [],
                    "query_string": b""})


def _api(client: TestClient, user: str) -> tuple[list[str], dict[str, object]]:
    r = client.get(f"/v1/users/{user}/recommendations", params={"k": 4})
    assert r.status_code == 200, r.text
    client.app.state.served.flush()  # type: ignore[attr-defined]  # recorded: the next list leaves it out
    return [it["item_id"] for it in r.json()["items"]], r.json()["meta"]


def test_the_user_pages_list_is_the_one_the_api_serves(tmp_path: Path, fake: FakeRecommender) -> None:
    """D3: the explorer ranks a user's list by the API route's own steps: the user's variant, its rules and
    diversity, and the items ``feedback.exclude_shown_hours`` leaves out; it records nothing as served."""
    from recsys.api import create_app
    from tests.api.conftest import api_settings

    settings = api_settings(tmp_path)
    settings.experiments = ExperimentsSettings(definitions=[AB])
    settings.feedback = settings.feedback.model_copy(update={"exclude_shown_hours": 24})
    with TestClient(create_app(settings, fake)) as client:
        users = {}
        for i in range(40):
            users.setdefault(client.app.state.experiments.assign("recommendations", f"u{i}").variant.name, f"u{i}")
        for variant, user in users.items():
            served = client.portal.call(pages.personal_list, _request(client), fake, user, None, None, 4)
            shown, meta = _api(client, user)
            assert [r.item_id for r in served.items] == shown and served.left_out == 0
            assert (served.assigned.experiment, served.assigned.variant.name) == (meta["experiment"], variant)
            assert served.diversity == (0.2 if variant == "hats" else 0.0)
            assert (shown[0] == "s8") == (variant == "hats")  # the variant's pin
            again = client.portal.call(pages.personal_list, _request(client), fake, user, None, None, 4)
            assert again.left_out == 4 and not {r.item_id for r in again.items} & set(shown)
            assert len(again.items) == 4 and [r.item_id for r in again.items] == _api(client, user)[0]
