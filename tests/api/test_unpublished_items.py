"""An item write on a nearly full disk, stored and then not published: PUT says the item was stored, a bulk POST
gives its per-item results with a warning (it was a 503 ``encoder`` for the whole batch, saying nothing of it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender
from recsys.catalogue import NotPublished
from recsys.errors import EncoderStorageError

FULL = EncoderStorageError("writing the item vectors snapshot to /h/vectors failed (No space left on device): free "
                           "space on that disk, then run `recsys embed` again")


def test_the_api_says_stored_for_put_and_gives_per_item_results_for_a_bulk_post(
        make_client: Callable[..., TestClient], fake: FakeRecommender, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = fake.catalogue.upsert_items

    def upsert(items: Any, *, index: bool = True) -> list[dict[str, Any]]:
        err = NotPublished.of(FULL)
        err.results = [{**r, "warning": err.message} for r in stored(items, index=index)]
        raise err

    monkeypatch.setattr(fake.catalogue, "upsert_items", upsert)
    client = make_client()
    r = client.put("/v1/items/n1", json={"title": "new hat"})
    assert r.status_code == 503 and r.json()["code"] == "encoder" and "were stored" in r.json()["detail"]
    r = client.post("/v1/items", json={"items": [{"item_id": "n2", "title": "x"}, {"item_id": "n3", "title": "y"}]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["stored", "stored"]
    assert all("publishing them to the index failed" in x["warning"] and "/h/" not in x["warning"] for x in results)
