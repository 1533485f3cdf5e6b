"""/readyz (no key), /v1/status and the explorer's /status page never show the data directory's path, as the
API's 503 answers do not: the reason no ranker is served names it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from recsys.api.errors import public_status
from recsys.api.testing import FakeRecommender
from recsys.store import Store
from tests.api.conftest import CATALOGUE


class Unranked(FakeRecommender):
    where = "/srv/secret-home/rankers"

    def status(self) -> dict[str, Any]:
        return {**super().status(), "ranker_version": None,
                "ranker_error": f"no ranker is served from {self.where}: its CURRENT file is missing, train one",
                "not_served": [f"ranker: {self.where}/CURRENT is missing"]}


def test_no_path_in_the_status(sqlite_store: Store, make_client: Callable[..., TestClient]) -> None:
    client = make_client(Unranked(sqlite_store, CATALOGUE))
    for path in ("/readyz", "/v1/status", "/status"):
        r = client.get(path)
        assert Unranked.where not in r.text and "secret-home" not in r.text, (path, r.text)
    reason = client.get("/readyz").json()["reason"]
    assert reason == "no ranker is served from <path>: its CURRENT file is missing, train one"
    assert "no ranker is served from <path>:" in client.get("/v1/status").json()["ranker_error"]


def test_public_status_keeps_what_is_not_a_path(tmp_path: Path) -> None:
    st = {"index_generation": "20260101-000000", "encoder_id": "clip", "ready": True, "n": 3, "reason": None}
    assert public_status(st) == st
