"""With auth off, only requests addressed to a loopback name are served: a web page whose name an attacker
re-points to 127.0.0.1 (DNS rebinding) is same-origin with the API and would otherwise get admin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.api import create_app
from recsys.api.testing import FakeRecommender


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:8000", "[::1]",
                                  "[::1]:8000", "LOCALHOST:1"])
def test_loopback_names_are_served(host: str, make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/healthz", headers={"host": host}).status_code == 200
    assert client.get("/v1/items/s1", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io", "[::2]:8000",
                                  "localhost.attacker.example", "10.0.0.1"])
def test_other_names_are_refused_with_auth_off(host: str, make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for r in (client.get("/v1/items/s1", headers={"host": host}),
              client.put("/v1/items/x", json={"title": "injected"}, headers={"host": host}),
              client.get("/", headers={"host": host})):
        assert r.status_code == 421, (host, r.status_code, r.text)
        assert "localhost" in r.json()["error"]["message"]
    assert client.get("/v1/items/x").status_code == 404


def test_auth_on_is_unchanged(fake: FakeRecommender, make_client: Callable[..., TestClient]) -> None:
    client = make_client(auth=True)
    r = client.get("/v1/items/s1", headers={"host": "shop.example"})
    assert r.status_code == 401  # asked for a key, not refused for its name


def test_the_real_test_server_name_needs_the_test_client(fake: FakeRecommender, tmp_path: Path) -> None:
    from tests.api.conftest import api_settings

    app = create_app(api_settings(tmp_path), fake)
    with TestClient(app, client=("127.0.0.1", 5000)) as client:
        assert client.get("/healthz").status_code == 421  # "testserver" from a real loopback peer
        assert client.get("/healthz", headers={"host": "localhost:8000"}).status_code == 200
