"""The server's refresh round: the heap is settled (garbage collected, then frozen) once per served generation."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api import app as app_module
from recsys.api.app import Runtime, settle_heap
from recsys.api.auth import KeyRing
from recsys.api.metrics import Metrics
from recsys.api.testing import FakeRecommender
from recsys.store import Store


def test_heap_settled_once_per_served_generation(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    fake = FakeRecommender(sqlite_store)
    runtime = Runtime(fake, Metrics(), KeyRing(sqlite_store), freeze_heap=True)
    monkeypatch.setattr(app_module, "settle_heap", lambda: calls.append(fake.generation))
    runtime.tick()
    runtime.tick()
    assert calls == ["gen-1"]
    fake.pending_generation = "gen-2"  # a new generation is published and picked up
    runtime.tick()
    runtime.tick()
    assert calls == ["gen-1", "gen-2"]
    Runtime(fake, Metrics(), KeyRing(sqlite_store)).tick()  # an app that does not own the service leaves the heap
    assert calls == ["gen-1", "gen-2"]


def test_settle_heap_freezes_what_is_alive_and_collects_cycles() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
    del a, b
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert not any(type(o) is Node for o in gc.get_objects())  # collected before the freeze
    finally:
        gc.unfreeze()


class RankerOff(FakeRecommender):
    """A server whose trained ranker could not be loaded (a database blip during a switch)."""

    def status(self) -> dict[str, Any]:
        return {**super().status(), "ranker_version": None, "not_served": ["recommendations", "trending"],
                "ranker_error": "the database could not be read to load the ranker; retrying"}


def test_readiness_says_what_is_not_served(sqlite_store: Store, make_client: Callable[..., TestClient]) -> None:
    r = make_client(RankerOff(sqlite_store)).get("/readyz")
    assert r.status_code == 200  # search still answers: ready, and saying what is not served
    body = r.json()
    assert body["ready"] is True and body["store"] is True and body["index_generation"] == "gen-1"
    assert body["not_served"] == ["recommendations", "trending"] and "ranker" in body["reason"]
    ok = make_client().get("/readyz").json()
    assert ok["ready"] is True and ok["not_served"] == []
