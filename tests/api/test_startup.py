"""A server whose database is down at start-up starts anyway, unready, and serves once the database answers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from recsys.api import create_app
from recsys.config import Settings
from tests.api.servers import TcpProxy, free_port
from tests.conftest import PG_URL, _pg_database


def _settings(tmp_path: Path, url: str) -> Settings:
    settings = Settings(home=tmp_path / "home", database_url=url)
    settings.api = settings.api.model_copy(update={"auth": False, "compute_threads": 0, "refresh_seconds": 0.05})
    return settings


def test_starts_unready_while_the_database_is_down(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"  # nothing listens there
    with TestClient(create_app(_settings(tmp_path, url)), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["store"] is False and "retry-after" in ready.headers
        r = client.get("/v1/items/x")
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_down" and "retry-after" in r.headers
        assert client.post("/v1/events", json={"events": [{"user_id": "u", "item_id": "i", "type": "view"}]}
                           ).status_code == 503


@pytest.mark.postgres
def test_serves_once_the_database_answers(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("RECSYS_TEST_POSTGRES_URL not set")
    for real_url in _pg_database():  # empty: the server migrates it once it answers
        u = make_url(real_url)
        proxy = TcpProxy((u.host or "127.0.0.1", u.port or 5432))
        try:
            proxy.cut()  # down before the server starts
            via_proxy = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            with TestClient(create_app(_settings(tmp_path, via_proxy)), raise_server_exceptions=False) as client:
                assert client.get("/readyz").json()["store"] is False
                assert client.get("/v1/items/x").status_code == 503
                proxy.restore()
                codes = []
                for _ in range(200):  # the refresh task migrates and the store answers: no restart
                    codes.append(client.get("/v1/items/x").status_code)
                    if codes[-1] != 503:
                        break
                    time.sleep(0.05)
                assert codes[-1] == 404, codes  # the schema exists now: an unknown item, not an outage
                assert client.get("/readyz").json()["store"] is True
        finally:
            proxy.close()


def test_readiness_says_nothing_is_built_yet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with TestClient(create_app(_settings(tmp_path, url)), raise_server_exceptions=False) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["store"] is True
        assert "recsys build" in ready.json()["reason"] and "search" in ready.json()["not_served"]


def test_a_schema_upgrade_that_fails_is_the_reason_not_an_unreachable_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.errors import SchemaBehind, SchemaMismatch, StoreUnavailable

    with TestClient(create_app(_settings(tmp_path, f"sqlite:///{tmp_path / 'recsys.db'}")),
                    raise_server_exceptions=False) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        why = "the schema upgrade of recsys.db from revision 0003 to head failed (table items_fts already exists)"

        def refuse(*_a: object, **_k: object) -> None:
            raise SchemaMismatch(why)

        monkeypatch.setattr(runtime.recommender.store, "upgrade", refuse)
        runtime.migrated = False  # as when the database was down at start-up and answers now
        runtime.tick()
        ready = client.get("/readyz")  # public: the reason without the file's path, which the log has
        assert ready.status_code == 503 and ready.json()["store"] is True
        assert ready.json()["reason"] == SchemaBehind.public
        r = client.get("/v1/items/x")
        assert r.status_code == 503 and r.json()["error"]["message"] == SchemaBehind.public

        def down(*_a: object, **_k: object) -> None:
            raise StoreUnavailable("database unreachable")

        monkeypatch.setattr(runtime.recommender.store, "upgrade", down)
        runtime.tick()  # down or busy again at the next try: an outage, not a failed migration
        assert client.get("/readyz").json()["reason"] != SchemaBehind.public
        assert client.get("/v1/items/x").json()["error"]["message"] == "the database is unreachable; retry shortly"
