"""Errors leak no infrastructure: callers, authenticated or not, never see the database's driver, user, host, port or
name, nor the data directory's paths; the server log keeps them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from recsys.api.testing import FakeRecommender
from recsys.errors import NoIndex
from recsys.store import Store

SECRETS = ("leaky_user", "10.9.8.7", "6543", "leaky_db", "psycopg", "postgresql")


class Outage(FakeRecommender):
    """A service whose database is down (item reads) and whose index directory is missing (similar items)."""

    def __init__(self, store: Any, pg: Store, index_dir: Path) -> None:
        super().__init__(store, [{"item_id": "a", "title": "a"}])
        self.pg, self.index_dir = pg, index_dir

    def get_item(self, item_id: str) -> dict[str, Any]:
        raise self.pg.unavailable(OperationalError("SELECT 1", {}, Exception(
            'connection to server at "10.9.8.7", port 6543 failed: FATAL: role "leaky_user" does not exist')))

    def similar(self, item_id: str, k: int = 20, **_: Any) -> list[Any]:
        raise NoIndex(f"no index generation under {self.index_dir}; run `recsys index build`")


def test_errors_name_no_database_and_no_path(sqlite_store: Store, tmp_path: Path,
                                             make_client: Callable[..., TestClient]) -> None:
    pg = Store("postgresql+psycopg://leaky_user:pw@10.9.8.7:6543/leaky_db")  # never connected
    index_dir = tmp_path / "secret-home" / "index"
    client = make_client(Outage(sqlite_store, pg, index_dir))
    for path, status in (("/v1/items/a", 503), ("/v1/items/a/similar", 503), ("/items/a", 503)):
        r = client.get(path)
        assert r.status_code == status, r.text
        for secret in (*SECRETS, str(tmp_path), "secret-home"):
            assert secret not in r.text, (path, secret, r.text)
    assert client.get("/v1/items/a").json()["error"]["message"] == "the database is unreachable; retry shortly"
    pg.dispose()
