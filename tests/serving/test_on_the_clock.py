"""Live events in a store whose clock follows its historical data (the demo, H&M: ``auto`` falls back to the day
after the data) count as made at the clock. Moving the shopper's "now" to them ranked them months after the data:
every trend window empty, the earlier history decayed, their one new view tagged "trending". An event within a day
of the clock (clients' clocks) still moves "now" to it; an explicit time cuts the history instead."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np

from recsys.ranking.history import History
from recsys.serving.requests import CLOCK_SKEW_DAYS, history_as_of, on_the_clock

CLOCK = 20_000.0  # days since the epoch


def _hist(*ts: float, disliked: tuple[float, ...] = ()) -> History:
    n = len(ts)
    return History(np.arange(n, dtype=np.int64), np.full(n, 3, np.int64), np.full(n, np.nan), np.array(ts),
                   np.arange(len(disliked), dtype=np.int64) + 10, np.array(disliked, dtype=float))


def test_events_before_the_clock_rank_at_it() -> None:
    h = _hist(CLOCK - 5, CLOCK - 1)
    assert on_the_clock(h, CLOCK) == (h, CLOCK)


def test_an_event_within_the_skew_moves_now_to_it() -> None:
    h, now = on_the_clock(_hist(CLOCK - 5, CLOCK + 0.5), CLOCK)
    assert now == CLOCK + 0.5 + 1e-6 and list(h.ts) == [CLOCK - 5, CLOCK + 0.5]


def test_live_events_long_after_a_historical_clock_count_at_the_clock() -> None:
    live = CLOCK + 250  # eight months after the data ended
    h, now = on_the_clock(_hist(CLOCK - 30, CLOCK - 2, live, live + 0.1, disliked=(CLOCK - 3, live)), CLOCK)
    assert now == CLOCK  # the trend windows stay those of the data's last days
    assert list(h.ts[:2]) == [CLOCK - 30, CLOCK - 2] and (h.ts[2:] < CLOCK).all() and (CLOCK - h.ts[2:] < 1e-9).all()
    assert list(h.rows) == [0, 1, 2, 3] and h.disliked_ts[0] == CLOCK - 3 and h.disliked_ts[1] < CLOCK
    assert CLOCK_SKEW_DAYS < 250


def test_history_as_of_cuts_at_an_explicit_time_and_clamps_on_the_clock() -> None:
    table = SimpleNamespace(rows_of=lambda ids: np.array([int(i) for i in ids], np.int64),
                            ids=[str(i) for i in range(5)])

    def at(d: float) -> datetime:
        return datetime.fromtimestamp(d * 86_400.0, UTC)

    records = [("1", "purchase", None, at(CLOCK - 2), 1), ("2", "view", None, at(CLOCK + 250), 2)]
    cut, now = history_as_of(records, table, CLOCK, True)
    assert now == CLOCK and len(cut) == 1
    on, now = history_as_of(records, table, CLOCK, False)
    assert now == CLOCK and len(on) == 2 and on.ts[-1] < CLOCK
