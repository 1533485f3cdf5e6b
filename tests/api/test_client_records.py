"""What the clients send in batches: numpy values as numbers, a record with NaN or infinity answered ``error`` alone
(the others sent, every result at its record's position), batches over 1,000 records in calls of 1,000, and the
per-item results of the fake and the real catalogue in one vocabulary."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.api.testing import FakeRecommender
from recsys.catalogue import Catalogue
from recsys.client import AsyncClient, Client, EventResult
from recsys.config import Settings
from recsys.errors import ValidationFailed
from recsys.store import Store
from tests.conftest import run_async


def test_nan_and_numpy_values_in_an_event_batch_are_answered_per_record(
        make_client: Callable[..., TestClient]) -> None:
    c = Client(http=make_client())
    events = [{"user_id": "u1", "item_id": "h1", "type": "rating", "value": np.int64(4)},
              {"user_id": "u1", "item_id": "h2", "type": "rating", "value": float("nan")},
              {"user_id": "u1", "item_id": "h3", "type": "rating", "value": np.float64("inf")},
              {"user_id": "u1", "item_id": "h4", "type": "rating", "value": np.float32(2.5)}]
    res = c.send_events(events)
    assert [(r.index, r.status) for r in res] == [(0, "stored"), (1, "error"), (2, "error"), (3, "stored")]
    assert res[1].error is not None and res[1].error.startswith("value: nan") and "NaN" in res[1].error
    assert res[2].error is not None and res[2].error.startswith("value: inf")


def test_nan_in_an_item_batch_is_answered_per_record(make_client: Callable[..., TestClient],
                                                     fake: FakeRecommender) -> None:
    c = Client(http=make_client())
    res = c.upsert_items([{"item_id": "n1", "price": float("nan")}, {"item_id": "n2", "price": np.float64(3.5)},
                          {"item_id": "n3", "attributes": {"size": np.int64(38)}}])
    assert [(r["index"], r["item_id"], r["status"]) for r in res] == [
        (0, "n1", "error"), (1, "n2", "stored"), (2, "n3", "stored")]
    assert res[0]["error"].startswith("price: nan")
    assert "n1" not in fake.items and fake.items["n2"]["price"] == 3.5 and fake.items["n3"]["attributes"] == {
        "size": 38}


def test_a_non_finite_weight_is_a_validation_error_naming_the_key() -> None:
    seen: list[httpx.Request] = []
    c = Client(http=httpx.Client(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(500)),
                                 base_url="http://x"))
    with pytest.raises(ValidationFailed, match=r"positive\.x: nan"):
        c.more_like_these({"x": float("nan"), "y": 1.0})
    with pytest.raises(ValidationFailed, match=r"filter\.price_max: inf"):
        c.recommend("u1", filter={"price_max": float("inf")})
    assert seen == []


class Batches:
    """A transport answering each batch with a result per record (index = its place in the request)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)
        records = records.get("events") or records.get("items")
        self.sizes.append(len(records))
        if len(records) > 1000:
            return httpx.Response(422, json={"error": {"code": "invalid", "message": "at most 1000"}})
        return httpx.Response(200, json={"results": [{"index": j, "status": "stored", "item_id": r.get("item_id"),
                                                      "event_id": 1} for j, r in enumerate(records)]})


def test_a_batch_over_1000_records_is_sent_in_calls_of_1000() -> None:
    b = Batches()
    c = Client(http=httpx.Client(transport=httpx.MockTransport(b.handle), base_url="http://x"))
    events: list[dict[str, Any]] = [{"user_id": "u", "item_id": f"i{i}", "type": "view"} for i in range(2300)]
    events[1500]["value"] = float("nan")  # refused here: the calls carry the other 2,299
    res = c.send_events(events)
    assert b.sizes == [1000, 1000, 299]
    assert [r.index for r in res] == list(range(2300))
    assert res[1500].status == "error" and res[1501] == EventResult(1501, "stored", 1)
    items = c.upsert_items([{"item_id": f"i{i}"} for i in range(1001)])
    assert b.sizes[3:] == [1000, 1] and [(r["index"], r["item_id"]) for r in items][-2:] == [(999, "i999"),
                                                                                            (1000, "i1000")]

    async def run() -> list[EventResult]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(b.handle), base_url="http://x")
        async with AsyncClient(http=http) as ac:
            return await ac.send_events(events)

    assert run_async(run()) == res


def test_fake_and_real_catalogue_answer_item_upserts_alike(make_client: Callable[..., TestClient], tmp_path: Any,
                                                           sqlite_store: Store) -> None:
    c = Client(http=make_client())
    fake_res = c.upsert_items([{"item_id": "s1", "title": "x"}, {"item_id": "new", "title": "y"}, {"title": "no id"}])
    real = Catalogue(Settings(home=tmp_path / "home"), sqlite_store)
    real_res = real.upsert_items([{"item_id": "s1", "title": "x"}, {"item_id": "new", "title": "y"},
                                  {"title": "no id"}], index=False)
    assert [r["status"] for r in fake_res] == [r["status"] for r in real_res] == ["stored", "stored", "error"]
    assert fake_res[2]["item_id"] is None and real_res[2]["item_id"] is None  # null, not the string "None"


def test_an_empty_batch_sends_nothing_and_a_failed_later_call_says_what_was_sent() -> None:
    sizes: list[int] = []

    def second_fails(request: httpx.Request) -> httpx.Response:
        sizes.append(len(json.loads(request.content)["events"]))
        if len(sizes) == 2:
            return httpx.Response(422, json={"error": {"code": "invalid", "message": "no"}})
        return httpx.Response(200, json={"results": []})

    c = Client(http=httpx.Client(transport=httpx.MockTransport(second_fails), base_url="http://x"))
    assert c.send_events([]) == [] and sizes == []
    with pytest.raises(ValidationFailed) as e:
        c.send_events([{"user_id": "u", "item_id": "a", "type": "view"}] * 1500)
    assert sizes == [1000, 500]
    assert "the records before position 1000 were sent and answered" in "".join(e.value.__notes__)
