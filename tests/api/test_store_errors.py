"""A database that gave no answer within the request's bound, as the API answers it: 503 ``store_busy`` (a code
clients already retry) with Retry-After, saying the database was slow or locked, not "unreachable"; the store's own
words (with the URL) go to the log. No database needed: the fake recommender's routes raise what the store would."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from recsys.api.testing import FakeRecommender
from recsys.errors import StoreTimeout
from recsys.store.deadline import bounded


class Slow(FakeRecommender):
    def trending(self, k: int = 20, *, filter: Any = None) -> list[Any]:
        raise StoreTimeout("database postgresql://db.internal/shop gave no answer in 5 s (...): a table is locked",
                           5.0)


class Raw(FakeRecommender):
    """A code path that bypasses Store.session(): SQLAlchemy's error for a statement the server cancelled at the
    request's bound (``statement_timeout``)."""

    def trending(self, k: int = 20, *, filter: Any = None) -> list[Any]:
        with bounded(5.0):
            raise OperationalError("SELECT 1", {}, psycopg.errors.lookup("57014")(
                "canceling statement due to statement timeout"))


def test_no_answer_in_time_is_a_busy_503_with_retry_after(make_client: Callable[..., TestClient],
                                                          fake: FakeRecommender,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    c = make_client(recommender=Slow(fake.store, []))
    with caplog.at_level(logging.WARNING, logger="recsys.api.errors"):
        r = c.get("/v1/trending")
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
    body = r.json()
    assert body["code"] == "store_busy" == body["error"]["code"]
    assert body["detail"] == "the database gave no answer in 5 s (a table locked, or the server overloaded); retry " \
                             "shortly"
    assert "db.internal" not in r.text and "db.internal/shop gave no answer in 5 s" in caplog.text


def test_a_bypassing_path_cancelled_by_the_server_is_busy_too(make_client: Callable[..., TestClient],
                                                              fake: FakeRecommender) -> None:
    r = make_client(recommender=Raw(fake.store, [])).get("/v1/trending")
    assert r.status_code == 503 and r.json()["code"] == "store_busy" and "retry-after" in r.headers, r.text
    assert "no answer in time" in r.json()["detail"], r.text
