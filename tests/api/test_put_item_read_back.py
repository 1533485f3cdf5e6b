"""PUT /v1/items/{id} answers with the stored item; when reading it back fails, the error is the API's answer for
it (a 503 for an outage, logged with the fact that the write was stored), never a 200 with another body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender
from recsys.errors import StoreUnavailable


class _Outage(FakeRecommender):
    """The write is committed, then the database drops out before the item is read back."""

    fail_with: Exception = StoreUnavailable("the database did not answer (test)")

    def get_item(self, item_id: str) -> dict[str, Any]:
        raise self.fail_with


def test_put_answers_with_the_item(client: TestClient) -> None:
    r = client.put("/v1/items/n1", json={"title": "Red dress", "category": "dresses"})
    assert r.status_code == 200 and r.json()["title"] == "Red dress"


def test_an_outage_reading_back_is_a_503_and_logged(make_client: Callable[..., TestClient], fake: FakeRecommender,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(_Outage(fake.store))
    with caplog.at_level("WARNING", logger="recsys.api.routes.items"):
        r = client.put("/v1/items/n1", json={"title": "Red dress"})
    assert r.status_code == 503 and r.json()["code"] == "store_down" and "Retry-After" in r.headers
    assert "item n1 was stored (" in caplog.text and "reading it back failed" in caplog.text


def test_a_bug_reading_back_is_a_500_not_a_200(make_client: Callable[..., TestClient], fake: FakeRecommender) -> None:
    broken = _Outage(fake.store)
    broken.fail_with = KeyError("title")  # a programming error in get_item/public_item
    r = make_client(broken).put("/v1/items/n1", json={"title": "Red dress"})
    assert r.status_code == 500 and r.json()["code"] == "internal"
