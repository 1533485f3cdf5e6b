"""The explorer's user page shows the list the API serves that user (needs recsys/api/routes/web.py to rank with
:func:`recsys.api.web.pages.personal_list`): the experiment variant's, without the items shown to the user within
``feedback.exclude_shown_hours``, and says so; a like's answer is ranked the same way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.api import create_app
from recsys.api.testing import FakeRecommender
from recsys.config import ExperimentsSettings
from tests.api.conftest import api_settings
from tests.api.test_web_fixes import AB, ORIGIN


@pytest.fixture
def exp_client(tmp_path: Path, fake: FakeRecommender) -> Iterator[TestClient]:
    settings = api_settings(tmp_path)
    settings.experiments = ExperimentsSettings(definitions=[AB])
    settings.feedback = settings.feedback.model_copy(update={"exclude_shown_hours": 24})
    with TestClient(create_app(settings, fake)) as c:
        yield c


def _recs(html: str) -> list[str]:
    return re.findall(r'<article class="card" data-item-id="([^"]+)"', html.split('id="recs"', 1)[1])


def _api(client: TestClient, user: str, k: int) -> list[str]:
    r = client.get(f"/v1/users/{user}/recommendations", params={"k": k})
    assert r.status_code == 200, r.text
    client.app.state.served.flush()  # type: ignore[attr-defined]
    return [it["item_id"] for it in r.json()["items"]]


def test_the_user_page_shows_the_served_list_and_its_variant(exp_client: TestClient) -> None:
    users = {}
    for i in range(40):
        users.setdefault(exp_client.app.state.experiments.assign("recommendations", f"u{i}").variant.name, f"u{i}")
    for variant, user in users.items():
        page = exp_client.get(f"/users/{user}").text
        assert _recs(page)[:4] == _api(exp_client, user, 4)  # the page itself shows nothing: none left out
        assert f'variant <b><bdi>{variant}</bdi></b>' in page and 'href="/experiments/ab"' in page
        assert ('<option value="0.2" selected>' in page) == (variant == "hats")  # the variant's diversity
        again = exp_client.get(f"/users/{user}").text
        assert "4 items shown to this user in the last 24 h left out" in again
        assert _recs(again) == _api(exp_client, user, 24)
        liked = exp_client.post("/feedback", data={"user_id": user, "item_id": _recs(again)[0]},
                                headers={**ORIGIN, "X-Explorer": "fetch"})
        assert liked.status_code == 200 and f'variant <b><bdi>{variant}</bdi></b>' in liked.text
        plain = exp_client.post("/feedback", data={"user_id": user, "item_id": "h1"}, headers=ORIGIN,
                                follow_redirects=False)
        assert plain.headers["location"] == f"/users/{user}?liked=h1"  # no diversity chosen: none carried
