"""A server on the shared data directory but another (here: empty) database is not ready: ``/readyz`` answers 503
naming both settings, the log has an ERROR, and an item write is stored but not published over the served index.
The server on the right database stays ready."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from recsys.api import create_app
from recsys.config import Settings
from recsys.index import build_from_catalog, current_id, index_root, list_generations
from recsys.service import Recommender
from recsys.store import Store
from recsys.store.tables import Item
from tests.index.test_mismatched_store import add_items, vectors


def _settings(home: Path) -> Settings:
    s = Settings(home=home)
    s.api = s.api.model_copy(update={"auth": False, "rate_limit_per_minute": 0, "compute_threads": 0})
    return s


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A data directory serving 60 items of its own database (``good.db``)."""
    settings = _settings(tmp_path / "home")
    good = Store(f"sqlite:///{tmp_path / 'good.db'}")
    good.upgrade()
    add_items(good, [f"p{j:03d}" for j in range(60)])
    build_from_catalog(good, settings, vectors=vectors)
    good.dispose()
    yield settings.home


def _client(home: Path, store: Store) -> TestClient:
    return TestClient(create_app(_settings(home), Recommender(_settings(home), store)), raise_server_exceptions=False)


def test_a_database_that_lacks_the_served_items_is_not_ready(home: Path, store: Store,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), _client(home, store) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.headers["Retry-After"]
        body = r.json()
        assert body["ready"] is False and body["store"] is True and body["index_generation"] is not None
        assert body["reason"].startswith("RECSYS_DATABASE_URL and RECSYS_HOME look mismatched: the database "
                                         "<database> knows 0 of 60 items sampled from index generation")
        assert str(home) not in body["reason"]  # paths and URLs are the operator's: the log has them
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("RECSYS_HOME look mismatched" in m and str(home.absolute()) in m for m in said), said


def test_an_item_write_there_is_stored_not_published(home: Path, store: Store) -> None:
    root = index_root(Settings(home=home))
    before, gens = current_id(root), len(list_generations(root))
    with _client(home, store) as c:
        r = c.post("/v1/items", json={"items": [{"item_id": "zz-new-1", "title": "Red wool hat", "price": 10}]})
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert detail.startswith("the items were stored, but publishing them to the index was refused: "
                                 "RECSYS_DATABASE_URL and RECSYS_HOME look mismatched")
        assert "`recsys index build --force`" in detail
    with store.session() as s:
        assert s.scalars(select(Item.external_id)).all() == ["zz-new-1"]
    assert current_id(root) == before and len(list_generations(root)) == gens


def test_the_right_database_is_ready(home: Path, tmp_path: Path) -> None:
    good = Store(f"sqlite:///{tmp_path / 'good.db'}")
    try:
        with _client(home, good) as c:
            r = c.get("/readyz")
            assert r.status_code == 200 and r.json()["ready"] is True, r.text
    finally:
        good.dispose()


def test_it_turns_ready_once_the_database_knows_the_items(home: Path, store: Store) -> None:
    with _client(home, store) as c:
        assert c.get("/readyz").status_code == 503
        add_items(store, [f"p{j:03d}" for j in range(60)])  # e.g. a restore that finished after the start
        c.app.state.runtime.tick()  # type: ignore[attr-defined]
        assert c.get("/readyz").status_code == 200


def test_a_role_refused_what_requests_read_is_not_ready(home: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL audit lead: with the server role's table privileges revoked every request answered 500 while
    `/readyz` said ready (its ping is `SELECT 1`); the round's probe reads what every request reads."""
    import contextlib

    from recsys.errors import StoreDenied

    good = Store(f"sqlite:///{tmp_path / 'good.db'}")
    real = good.reading
    denied = [True]

    @contextlib.contextmanager
    def reading() -> Iterator[object]:
        if denied[0]:
            raise StoreDenied("database postgresql://app@db/shop refused role app a SELECT (permission denied for "
                              "table catalogue_state); ...GRANT SELECT...")
        with real() as c:
            yield c

    monkeypatch.setattr(good, "reading", reading)
    try:
        with _client(home, good) as c:
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["ready"] is False
            assert "refused this server a privilege" in r.json()["reason"] and "app@db" not in r.json()["reason"]
            denied[0] = False
            c.app.state.runtime.tick()  # type: ignore[attr-defined]
            assert c.get("/readyz").status_code == 200
    finally:
        good.dispose()
