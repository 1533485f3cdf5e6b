"""While the database is down, a server's refresh (every second) fails to load the ranker each round: the warning,
which carries the database's address, is logged once a minute, not each round (PostgreSQL audit D4: 57 lines a
minute)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from recsys.config import Settings
from recsys.errors import StoreUnavailable
from recsys.serving import generations
from recsys.serving.generations import Generations, Served


def test_a_ranker_that_cannot_load_during_an_outage_is_said_once_a_minute(
        settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(generations.REPEATS, "_seen", {})
    monkeypatch.setattr("recsys.store.deadline.time.monotonic", lambda: clock[0])
    gens = Generations(settings, SimpleNamespace())  # type: ignore[arg-type]
    reader = SimpleNamespace(generation_id="g1")
    old = Served(reader, None, "/home/rankers/r1")  # type: ignore[arg-type]
    down = StoreUnavailable("database postgresql://db:5432/shop is unreachable (connection refused)")
    with caplog.at_level(logging.WARNING, logger="recsys.serving.generations"):
        for _ in range(30):  # thirty refresh rounds, a second apart
            assert gens._ranker_failed(down, "/home/rankers/r2", old, reader) is False  # type: ignore[arg-type]
            clock[0] += 1.0
        clock[0] += 60.0
        gens._ranker_failed(down, "/home/rankers/r2", old, reader)  # type: ignore[arg-type]
    said = [r for r in caplog.records if "could not be loaded" in r.getMessage()]
    assert len(said) == 2
