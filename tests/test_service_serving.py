"""The service's serving side under faults: a ranker load that meets a database blip is retried (and readiness says
what is off meanwhile), concurrent writers of new items all succeed, the result cache is bounded by bytes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from recsys.config import Settings
from recsys.errors import RankerError, StoreUnavailable
from recsys.index import build_from_catalog
from recsys.service import Recommender
from recsys.store import Store
from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = pytest.mark.slow  # the session's e2e demo build (shared with the notebook and browser tests)


class FlakyStore(Store):
    """A store whose sessions fail like an unreachable database while ``down`` is set."""

    down = False

    @contextmanager
    def session(self) -> Iterator[Session]:
        if self.down:
            raise StoreUnavailable("database is unreachable (test)")
        with super().session() as s:
            yield s


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    built, _ = built_demo(tmp_path_factory)
    return private_home(built, tmp_path / "home")


def _open(home: Path, **ranking: Any) -> tuple[Settings, FlakyStore, Recommender]:
    settings = e2e_settings(home)
    if ranking:
        settings.ranking = settings.ranking.model_copy(update=ranking)
    store = FlakyStore(settings.db_url)
    return settings, store, Recommender(settings, store)


def test_ranker_load_meeting_a_database_blip_is_retried(home: Path) -> None:
    settings, store, rec = _open(home)
    try:
        assert rec.trending(5)
        first = rec.status()["index_generation"]
        build_from_catalog(store, settings, mode="full")  # a new index generation is published
        store.down = True  # ... and the database blips while the server switches to it
        assert rec.refresh() is False
        assert rec.status()["index_generation"] == first  # the old pair keeps serving meanwhile
        store.down = False
        assert rec.refresh() is True  # retried on the next refresh, not only when another generation appears
        status = rec.status()
        assert status["index_generation"] != first and status["ranker_version"] and status["not_served"] == []
        assert rec.trending(5)
    finally:
        store.dispose()


def test_first_ranker_load_during_an_outage_is_retried_and_reported(home: Path) -> None:
    settings, store, rec = _open(home)
    try:
        store.down = True
        rec.refresh()
        status = rec.status()
        assert status["ready"] and status["ranker_version"] is None  # search still works
        assert status["not_served"] == ["recommendations", "trending"] and "database" in status["ranker_error"]
        with pytest.raises(RankerError, match="database"):
            rec.trending(5)
        store.down = False
        assert rec.refresh() is True
        assert rec.status()["ranker_version"] and rec.status()["ranker_error"] is None
        assert rec.trending(5)
    finally:
        store.dispose()
def test_a_damaged_ranker_says_why_and_what_to_do(home: Path) -> None:
    """A flipped bit in the served ranker's weights (same size) is refused by its checksum, and the 503 every
    recommendation then answers names the cause and the two ways back."""
    from recsys.ranking import rankers_root
    from recsys.ranking.artifact import current_version

    settings = e2e_settings(home)
    root = rankers_root(settings)
    net = root / str(current_version(root)) / "net.pt"
    data = bytearray(net.read_bytes())
    data[len(data) // 2] ^= 0x01
    net.write_bytes(bytes(data))
    _, store, rec = _open(home)
    try:
        error = rec.status()["ranker_error"]
        assert "net.pt is missing or damaged (checksum)" in error and "`recsys ranker rollback`" in error, error
        with pytest.raises(RankerError, match="recommendations are off for now: .*checksum.*recsys train"):
            rec.recommend("user-0001", 3)
    finally:
        store.dispose()


def test_concurrent_new_items_all_stored_and_searchable(home: Path) -> None:
    settings, store, rec = _open(home)
    try:
        ids = [f"concurrent-{i}" for i in range(8)]

        def put(item_id: str) -> list[dict[str, Any]]:
            return rec.catalogue.upsert_items([{"item_id": item_id, "title": f"ultramarine velvet lantern {item_id}",
                                      "category": "lamps"}])

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(put, ids))
        assert all(r[0]["status"] == "stored" for r in results), results
        rec.refresh()
        served = set(rec.index.item_ids)
        assert set(ids) <= served
        # the same new id from several writers at once: one row, every writer told it was stored
        with ThreadPoolExecutor(8) as pool:
            same = list(pool.map(lambda _: put("concurrent-same"), range(8)))
        assert all(r[0]["status"] == "stored" for r in same), same
        assert rec.get_item("concurrent-same")["item_id"] == "concurrent-same"
    finally:
        store.dispose()


def _crowd_buys(rec: Recommender, item: str, n: int = 40) -> None:
    events = [{"user_id": f"crowd-{i}", "item_id": item, "type": "purchase", "event_id": f"crowd-{i}"}
              for i in range(n)]
    assert all(r.status == "stored" for r in rec.catalogue.ingest_events(events))


@pytest.mark.parametrize("live", [False, True])
def test_live_statistics_follow_new_events_without_a_retrain(home: Path, live: bool) -> None:
    """With ranking.live_stats_s, an item a crowd just bought becomes popular for a newcomer at the next refresh,
    the model unchanged; without it the statistics stay those of the ranker's training (and a store down during a
    recount keeps them too)."""
    _, store, rec = _open(home, live_stats_s=1e-6 if live else 0.0)
    before = [r.item_id for r in rec.recommend("newcomer", 10, fresh=True)]
    ranker_path = rec.status().get("ranker_version")
    ranker = rec.ranker
    assert ranker is not None
    pop = ranker.stats.pop_at(ranker.stats.end_ts + 1.0)
    tail = next(ranker.table.ids[r] for r in np.argsort(pop, kind="stable") if ranker.table.ids[r] not in before)
    _crowd_buys(rec, tail)
    store.down = True
    assert rec.refresh() is False  # a failed recount keeps what is served
    store.down = False
    assert rec.refresh() is live
    after = [r.item_id for r in rec.recommend("newcomer", 10)]
    assert (after[0] == tail) is live
    assert rec.status().get("ranker_version") == ranker_path  # no retrain
    recounted = rec.ranker.stats  # type: ignore[union-attr]
    assert (recounted.pairs_users == ranker.stats.counted_users) is live  # the training's co-occurrence kept
    assert np.array_equal(recounted.cooc_col, ranker.stats.cooc_col)
    assert rec.refresh() is False  # nothing new since the recount


def test_a_live_recount_follows_a_new_index_that_adds_items(home: Path) -> None:
    """Events on an item not indexed yet cannot be counted; once a new index serves it, the next refresh recounts
    (the new index's copy of the ranker must not keep the recount's version)."""
    _, _, rec = _open(home, live_stats_s=1e-6)
    rec.recommend("newcomer", 5, fresh=True)
    item = {"item_id": "brand-new", "title": "Brand new mug", "category": "mug", "price": 9.0}
    assert rec.catalogue.upsert_items([item], index=False)[0]["status"] == "stored"
    _crowd_buys(rec, "brand-new")
    rec.refresh()
    rec.catalogue.index_changes()
    rec.refresh()
    stats = rec.ranker.stats  # type: ignore[union-attr]
    assert stats.pop[stats.ids.index("brand-new")] == 40


def test_the_server_computes_neighbour_lists_ahead_once_per_catalogue(home: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """After loading a generation the server's refresh round computes every item's neighbour lists (and loads the
    query encoder) in a background thread (lists requests already used keep their bits, so their lists do not
    change), once per catalogue; a new index generation gets its own; ``ranking.warm_lists_max`` below the
    catalogue's size turns it off."""
    from recsys.api.app import Runtime
    from recsys.api.auth import KeyRing
    from recsys.api.metrics import Metrics

    settings, store, rec = _open(home)
    try:
        before = [r.item_id for r in rec.recommend("user-0001", 10, fresh=True)]
        assert len(before) == 10 and len(rec.ranker._gen._similar._lists) > 0  # made on first sight
        runtime = Runtime(rec, Metrics(), KeyRing(store), warm_lists=True)
        assert rec._encoders._encoder is None  # recommendations need no query encoder: the first search would load it
        runtime.tick()
        assert runtime._warming is not None
        table, thread = runtime._warming
        thread.join(120)
        assert rec._encoders._encoder is not None  # loaded ahead with the lists
        assert not [r for r in caplog.records if "query encoder" in r.getMessage()]  # and nothing went wrong
        ranker = rec.ranker
        assert ranker.table is table and ranker._gen._similar.warmed == 1.0 and ranker._gen._near.warmed == 1.0
        assert [r.item_id for r in rec.recommend("user-0001", 10, fresh=True)] == before
        runtime.tick()
        assert runtime._warming[1] is thread  # the same catalogue: not again
        build_from_catalog(store, settings, mode="full")  # a new generation: its lists are computed too
        runtime.tick()
        assert runtime._warming[1] is not thread
        runtime._warming[1].join(120)
        assert rec.ranker.table is not table and rec.ranker._gen._similar.warmed == 1.0
    finally:
        store.dispose()
    _, store, rec = _open(home, warm_lists_max=10)
    try:
        rec.trending(5)
        assert rec.generations.warm_lists() == 0 and rec.ranker._gen._similar.warmed == 0.0
    finally:
        store.dispose()


def test_a_query_encoder_other_than_the_index_ones_is_named(home: Path) -> None:
    """Another encoder (a changed preset, a dangling encoder pointer) makes queries the index cannot answer: said
    as such, not as the caller's bad query vector."""
    from recsys.errors import IncompatibleArtifact

    _, _, rec = _open(home)
    assert rec.search_text("red", 3)
    rec.encoder.id = "another-encoder@unfitted"
    with pytest.raises(IncompatibleArtifact, match="is not the one index generation .* was built with"):
        rec.search_text("red", 3)
