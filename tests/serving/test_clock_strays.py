"""The store's clock is not moved by a few live events: a like from the explorer (stamped today) in a historical
store (the demo, H&M), once counted by `recsys train` or the live recount, made ``auto`` switch every shopper to the
wall clock, months after the data: trend windows empty, history decayed. And a pinned clock is checked like ``now``:
within pandas' years (a year 2300 failed every request with a traceback) and not before the data."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest

from recsys.config import RankingSettings
from recsys.errors import BeforeData
from recsys.ranking.stats import BULK_EVENTS
from recsys.serving.requests import clock

WALL = datetime.now(UTC).timestamp() / 86_400.0
DATA_END = WALL - 250  # a historical store: its events ended eight months ago


def _served(ev_ts: np.ndarray) -> SimpleNamespace:
    stats = SimpleNamespace(ev_ts=ev_ts, end_ts=float(ev_ts[-1]))
    from recsys.ranking.stats import ItemStats

    stats.data_end = lambda stale: ItemStats.data_end(stats, stale)  # type: ignore[arg-type]
    return SimpleNamespace(ranker=SimpleNamespace(stats=stats))


def _at(mode: str, ev_ts: np.ndarray) -> float:
    return clock(SimpleNamespace(ranking=RankingSettings(clock=mode)), lambda: _served(ev_ts))  # type: ignore[arg-type]


def _history(live: int) -> np.ndarray:
    old = DATA_END - np.linspace(90, 0, 20_000)
    return np.sort(np.concatenate([old, WALL - np.linspace(0.01, 0.001, live)]))


@pytest.mark.parametrize("mode", ["auto", "data"])
def test_a_few_live_events_leave_a_historical_store_on_its_data_clock(mode: str) -> None:
    assert _at(mode, _history(0)) == pytest.approx(DATA_END + 1)
    assert _at(mode, _history(3)) == pytest.approx(DATA_END + 1)  # three likes today: still the data's clock


def test_once_the_live_events_are_the_bulk_auto_follows_the_wall_clock() -> None:
    wall = datetime.now(UTC).timestamp() / 86_400.0  # WALL was read when the module was imported
    assert _at("auto", _history(BULK_EVENTS + 10)) == pytest.approx(wall, abs=1e-3)


def test_a_small_store_keeps_its_newest_event_as_the_end() -> None:
    ev = np.array([DATA_END - 3, DATA_END - 1, DATA_END])
    assert _at("data", ev) == pytest.approx(DATA_END + 1)


def test_a_pinned_clock_outside_pandas_years_is_refused_when_settings_are_read() -> None:
    with pytest.raises(ValueError, match="between the years 1678 and 2261"):
        RankingSettings(clock="2300-01-01")


def test_a_pinned_clock_before_the_data_is_refused_saying_which_setting() -> None:
    with pytest.raises(BeforeData, match="ranking.clock=1900-01-01.*RECSYS_RANKING__CLOCK"):
        _at("1900-01-01", _history(0))
    day = _at("2026-01-01T00:00:00+00:00", np.array([10.0, 20.0]))
    assert day == pytest.approx(datetime(2026, 1, 1, tzinfo=UTC).timestamp() / 86_400.0)
