"""With ``ranking.live_stats_s`` the served statistics are recounted over the events training reads: withheld
shoppers replayed by ``evaluate --test-events`` (evaluation users) neither change them nor trigger a recount, so an
evaluation run leaves real users' recommendations as they were."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pandas as pd

from recsys.config import Settings
from recsys.serving.generations import Generations, Served
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers.batch import Writer
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import ImportReport
from recsys.store.queries import mark_evaluation_users


class CountingRanker:
    """Stands in for a RankingPipeline: its "statistics" are the purchases per item it was recounted over."""

    def __init__(self, counts: Counter[str] | None = None) -> None:
        self.counts = counts or Counter()
        self.stats = SimpleNamespace(counted_through=None)

    def with_events(self, events: pd.DataFrame, pairs: bool = False) -> CountingRanker:
        return CountingRanker(Counter(events["item_id"].astype(str)))


def _buy(store: Store, users: list[str], item: str) -> None:
    rows = [{"user_id": u, "item_id": item, "type": "purchase", "event_id": f"{u}-{item}"} for u in users]
    assert all(r.status == "stored" for r in ingest_events(store, rows))


def _recount(gens: Generations) -> bool:
    gens._stats_at = float("-inf")  # due now, whatever the clock
    served = gens.loaded
    assert served is not None
    return gens._recount_stats(served)


def _counts(gens: Generations) -> Counter[str]:
    assert gens.loaded is not None
    return cast(CountingRanker, gens.loaded.ranker).counts


def test_a_recount_leaves_out_evaluation_users(store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.ranking = settings.ranking.model_copy(update={"live_stats_s": 3600.0})
    with store.session() as s:
        w = Writer(s, ImportReport(source="t"), 100, None)
        for i in ("a", "b"):
            w.item(ItemRecord(external_id=i, title=f"item {i}"))
        w.flush_items()
    _buy(store, ["real-1", "real-2"], "a")
    gens = Generations(settings, store)
    gens._served = Served(cast(Any, None), cast(Any, CountingRanker()), "ranker")
    assert _recount(gens) is True and _counts(gens) == Counter({"a": 2})
    version = gens.loaded.stats_version  # type: ignore[union-attr]

    _buy(store, [f"held-{i}" for i in range(5)], "b")  # an evaluation replays withheld shoppers
    mark_evaluation_users(store, {f"held-{i}" for i in range(5)}, "heldout.data")
    assert _recount(gens) is False  # nothing new for training: no recount
    assert _counts(gens) == Counter({"a": 2}) and gens.loaded.stats_version == version  # type: ignore[union-attr]

    _buy(store, ["real-3"], "a")  # a real event: recounted, still without the evaluation users
    assert _recount(gens) is True and _counts(gens) == Counter({"a": 3})
