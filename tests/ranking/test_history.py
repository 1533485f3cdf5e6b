"""The per-request history read (tuples, no frames) gives exactly the History the frame path gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from recsys.ranking.catalog import ItemTable
from recsys.ranking.history import History, day_of, history_from_frame, history_from_records
from recsys.serving.requests import session_history
from tests.ranking.fixtures import make_world


def _same(a: History, b: History) -> None:
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.types, b.types)
    np.testing.assert_allclose(a.values, b.values, equal_nan=True)
    np.testing.assert_allclose(a.ts, b.ts, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(a.disliked, b.disliked)


def test_records_and_frame_give_the_same_history() -> None:
    world = make_world()
    table = ItemTable.build(world.vectors, world.items)
    rng = np.random.default_rng(3)
    ids = list(world.items["item_id"])
    types = ["view", "click", "purchase", "rating", "like", "dislike", "bogus"]
    start = datetime(2024, 3, 1, 12, 30)
    records = []
    for i in range(60):
        item = ids[rng.integers(len(ids))] if i % 13 else "not-in-catalogue"
        ts = start + timedelta(hours=int(rng.integers(0, 500)))  # out of order, with ties
        value = float(rng.integers(1, 6)) if i % 4 == 0 else None
        records.append((item, types[rng.integers(len(types))], value, ts))
    frame = pd.DataFrame(records, columns=["item_id", "type", "value", "ts"])
    got = history_from_records(records, table)
    _same(got, history_from_frame(frame, table))
    assert len(got.disliked) and len(got) < len(records)  # unknown items and types dropped, dislikes apart


def test_aware_timestamps_are_read_as_utc() -> None:
    world = make_world()
    table = ItemTable.build(world.vectors, world.items)
    item = str(world.items["item_id"][0])
    naive = history_from_records([(item, "view", None, datetime(2024, 1, 1, 12))], table)
    aware = history_from_records([(item, "view", None, datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))))],
                                 table)
    utc = history_from_records([(item, "view", None, datetime(2024, 1, 1, 12, tzinfo=UTC))], table)
    assert naive.ts[0] == aware.ts[0] == utc.ts[0] == (datetime(2024, 1, 1, 12) - datetime(1970, 1, 1)).days + 0.5


def test_no_records_is_the_empty_history() -> None:
    world = make_world()
    table = ItemTable.build(world.vectors, world.items)
    assert len(history_from_records([], table)) == 0


def test_posted_session_events_are_uncounted_by_the_statistics() -> None:
    """A session's events are never stored, so the per-request count adds all of them (a stored frame: none)."""
    world = make_world()
    table = ItemTable.build(world.vectors, world.items)
    ids = list(world.items["item_id"])[:3]
    session = session_history([{"item_id": i, "type": "view", "timestamp": f"2024-03-0{n + 1}T10:00:00"}
                               for n, i in enumerate(ids)])
    assert history_from_frame(session, table).uncounted_from == -np.inf
    plain = pd.DataFrame({"item_id": ids, "type": "view", "value": None, "ts": pd.to_datetime(["2024-03-01"] * 3)})
    assert history_from_frame(plain, table).uncounted_from == np.inf


def test_a_request_time_out_of_range_is_named_plainly() -> None:
    from recsys.config import Settings
    from recsys.errors import ValidationFailed
    from recsys.serving.requests import clock

    said = r"^now 9999-12-31T00:00:00 is not a time between the years 1678 and 2261$"
    with pytest.raises(ValidationFailed, match=said):
        clock(Settings(), lambda: None, datetime(9999, 12, 31))  # type: ignore[arg-type, return-value]


def test_a_request_time_before_every_known_event_is_refused() -> None:
    """Nothing was sold or seen yet: the list would be the catalogue in id order, tagged popular."""
    from types import SimpleNamespace

    from recsys.config import Settings
    from recsys.errors import ValidationFailed
    from recsys.serving.requests import clock

    first = float(day_of(datetime(2026, 1, 1)))  # type: ignore[arg-type]
    served = SimpleNamespace(ranker=SimpleNamespace(stats=SimpleNamespace(ev_ts=np.array([first, first + 3.0]))))
    with pytest.raises(ValidationFailed, match=r"before the first event the ranker knows \(2026-01-01T00:00:00"):
        clock(Settings(), lambda: served, datetime(2025, 12, 31))  # type: ignore[arg-type, return-value]
    assert clock(Settings(), lambda: served, datetime(2026, 1, 2)) == first + 1.0  # type: ignore[arg-type, return-value]
    assert clock(Settings(), lambda: SimpleNamespace(ranker=None), datetime(2000, 1, 1))  # type: ignore[arg-type, return-value]
