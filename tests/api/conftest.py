"""API fixtures: the app over the in-memory FakeRecommender and a real SQLite store (for API keys)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from recsys.api import create_app
from recsys.api.testing import FakeRecommender
from recsys.config import Settings
from recsys.store import Store

CATALOGUE = [
    {"item_id": f"s{i}", "title": f"red running shoe {i}", "category": "shoes", "price": 10.0 * i,
     "in_stock": i % 3 != 0, "attributes": {"colour": "red" if i % 2 else "blue"}}
    for i in range(1, 9)
] + [
    {"item_id": f"h{i}", "title": f"wool winter hat {i}", "category": "hats", "price": 5.0 * i, "in_stock": True,
     "attributes": {"colour": "grey"}}
    for i in range(1, 9)
]


def api_settings(tmp_path: Path, **api: Any) -> Settings:
    s = Settings(home=tmp_path / "home")
    s.api = s.api.model_copy(update={"auth": False, "rate_limit_per_minute": 0, **api})
    return s


@pytest.fixture
def fake(sqlite_store: Store) -> FakeRecommender:
    return FakeRecommender(sqlite_store, CATALOGUE)


@pytest.fixture
def make_client(tmp_path: Path, fake: FakeRecommender) -> Iterator[Callable[..., TestClient]]:
    """``make_client(auth=True, rate_limit_per_minute=60, ...)``: a started TestClient over the fake."""
    clients: list[TestClient] = []

    def make(recommender: Any = None, **api: Any) -> TestClient:
        app: FastAPI = create_app(api_settings(tmp_path, **api), recommender or fake)
        c = TestClient(app, raise_server_exceptions=False)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
