"""A request ranks from the shopper's latest ``max_events`` events (a ranker knob): however long the history, what
a miss reads and ranks stays bounded, and a long history ranks as the same latest events alone would, on the clock,
at an explicit time and for buy-again alike. Training anchors see the same bound."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.config import Settings
from recsys.ranking.history import History
from recsys.service import Recommender
from recsys.store import Store
from tests.e2e_fixture import built_demo, e2e_settings, private_home

CLOCK = "2026-03-01T00:00:00"


def test_latest_keeps_the_latest_positives_and_every_dislike() -> None:
    h = History(np.arange(6, dtype=np.int64), np.full(6, 2, np.int64), np.arange(6.0), np.arange(6.0) + 100,
                np.array([40, 41], np.int64), np.array([99.0, 104.5]), uncounted_from=102.0)
    cut = h.latest(4)
    assert list(cut.rows) == [2, 3, 4, 5] and list(cut.ts) == [102, 103, 104, 105] and list(cut.values) == [2, 3, 4, 5]
    assert list(cut.disliked) == [40, 41] and cut.uncounted_from == 102.0
    assert h.latest(6) is h and h.latest(10) is h


@pytest.mark.slow  # the session's e2e demo build
def test_a_long_history_ranks_as_its_latest_events(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    built, _ = built_demo(tmp_path_factory)
    settings: Settings = e2e_settings(private_home(built, tmp_path / "home"))
    settings.ranking = settings.ranking.model_copy(update={"clock": CLOCK})
    rec = Recommender(settings, Store.open(settings))
    try:
        ids = rec.ranker.table.ids
        kinds = ["view", "purchase", "add_to_cart"]
        events = [{"item_id": ids[3 * n], "type": kinds[n % 3], "timestamp": f"2026-02-{n + 1:02d}T10:00:00"}
                  for n in range(12)]
        for user, mine in (("long", events), ("short", events[-5:])):
            got = rec.catalogue.ingest_events([{"user_id": user, **e} for e in mine])
            assert {r.status for r in got} == {"stored"}

        def lists(**kw: Any) -> list[list[tuple[str, float]]]:
            return [[(r.item_id, r.score) for r in rec.recommend(u, 10, fresh=True, **kw)] for u in ("long", "short")]

        assert rec.ranker.params.max_events >= 12
        unbounded = lists()
        assert unbounded[0] != unbounded[1]  # the older events matter: the bound below is what makes them equal
        rec.ranker.params.max_events = 5
        on_clock, at_time = lists(), lists(now=datetime(2026, 2, 20))
        assert on_clock[0] == on_clock[1] and at_time[0] == at_time[1]
        again = [[r.item_id for r in rec.buy_again(u, 10)] for u in ("long", "short")]
        assert again[0] == again[1] and len(again[0]) == 5
    finally:
        rec.store.dispose()
