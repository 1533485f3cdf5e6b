"""The same events give the same list, whichever process ranks them and however the shopper came by them:

- a history naming an item deleted since ranks alike in a process loaded before the delete (a running server) and
  one started after it (the CLI, a notebook), and neither shows or names the deleted item;
- an anonymous session ranks as the stored user with the same events (on the same clock);
- a deleted user who comes back ranks as a brand-new id with the same events, in this process and in a new one
  (the ranker's statistics still list the id, but none of its stored events is theirs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys.config import Settings
from recsys.service import Recommender
from recsys.store import Store
from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = pytest.mark.slow  # the session's e2e demo build (shared with the notebook and browser tests)

CLOCK = "2026-03-01T00:00:00"
"""A pinned clock inside the demo's data (January to March 2026): events stamped after it are after the clock."""


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    built, _ = built_demo(tmp_path_factory)
    return private_home(built, tmp_path / "home")


def _settings(home: Path, **ranking: Any) -> Settings:
    settings = e2e_settings(home)
    settings.ranking = settings.ranking.model_copy(update=ranking)
    return settings


def _ranked(items: list[Any]) -> list[tuple[str, float]]:
    return [(r.item_id, r.score) for r in items]


def _store(rec: Recommender, events: list[dict[str, Any]]) -> None:
    assert all(r.status == "stored" for r in rec.catalogue.ingest_events(events))


def test_a_history_with_a_deleted_item_ranks_alike_before_and_after_the_process_starts(home: Path) -> None:
    settings = _settings(home)
    warm = Recommender(settings, Store.open(settings))  # a running server: generations loaded before the delete
    ids = warm.ranker.table.ids
    gone, other = ids[7], ids[40]
    warm.recommend("user-0001", 5)
    warm.catalogue.delete_item(gone)
    _store(warm, [{"user_id": "shopper", "item_id": gone, "type": "like"},
                  {"user_id": "shopper", "item_id": other, "type": "view"}])
    cold = Recommender(settings, Store.open(settings))  # `recsys recommend` after the delete
    try:
        for explain in (False, True):
            lists = [r.recommend("shopper", 20, explain=explain, fresh=True) for r in (warm, cold)]
            assert _ranked(lists[0]) == _ranked(lists[1])
            session = [{"item_id": gone, "type": "like"}, {"item_id": other, "type": "view"}]
            for r in (warm, cold):
                assert _ranked(r.recommend_for_events(session, 20)) == _ranked(cold.recommend_for_events(session, 20))
            for items in lists:
                assert gone not in [it.item_id for it in items]
                assert all((it.explanation or {}).get("because_of") != gone for it in items)
        assert gone not in [it.item_id for r in (warm, cold) for it in r.buy_again("shopper", 20)]
    finally:
        warm.store.dispose()
        cold.store.dispose()


def test_an_anonymous_session_ranks_as_the_logged_in_shopper_with_the_same_events(home: Path) -> None:
    settings = _settings(home, clock=CLOCK)
    rec = Recommender(settings, Store.open(settings))
    try:
        ids = rec.ranker.table.ids
        events = [{"item_id": ids[10], "type": "view", "timestamp": "2026-03-10T10:00:00"},
                  {"item_id": ids[11], "type": "add_to_cart", "timestamp": "2026-03-10T10:05:00"}]
        session = _ranked(rec.recommend_for_events(events, 10))
        _store(rec, [{"user_id": "logged-in", **e} for e in events])
        assert session == _ranked(rec.recommend("logged-in", 10))
    finally:
        rec.store.dispose()


@pytest.mark.parametrize("live", [False, True])
def test_a_deleted_user_who_comes_back_ranks_as_a_new_one(home: Path, live: bool) -> None:
    """With ``live``, the statistics were recounted (keeping the training's co-occurrence pairs) before the delete."""
    settings = _settings(home, live_stats_s=1e-6 if live else 0.0)
    rec = Recommender(settings, Store.open(settings))
    try:
        ranker = rec.ranker
        assert ranker.stats.counted_users is not None
        user = sorted(ranker.stats.counted_users)[1]
        if live:
            assert rec.refresh() and rec.ranker.stats.counted_through is not None  # recounted
        rec.catalogue.delete_user(user)
        bought = rec.ranker.table.ids[30:32]  # dated before the ranker's training end (a backfill)
        events = [{"item_id": i, "type": "purchase", "timestamp": f"2026-03-15T10:0{n}:00"}
                  for n, i in enumerate(bought)]
        for u in (user, "brand-new"):
            _store(rec, [{"user_id": u, **e} for e in events])
        assert _ranked(rec.recommend(user, 10)) == _ranked(rec.recommend("brand-new", 10))
        assert _ranked(rec.buy_again(user, 10)) == _ranked(rec.buy_again("brand-new", 10))
        later = Recommender(_settings(home), Store.open(settings))  # a restart, or the CLI: no recount
        try:
            assert _ranked(later.recommend(user, 10)) == _ranked(later.recommend("brand-new", 10))
        finally:
            later.store.dispose()
    finally:
        rec.store.dispose()
