"""A generation built from an older catalogue snapshot never drops what a newer one served.

The reviewer's interleaving: `recsys build` (or `recsys index build --full`) reads the catalogue; meanwhile an API
upsert stores an item and publishes a delta serving it; then the build switches to its own generation. The upserted
item must stay served (its changes are caught up as a delta over the new generation), and a build that had nothing
to write must not switch back to the older generation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys.config import Settings
from recsys.index import IndexReader, build_from_catalog, current_id, index_root, layout, publish
from recsys.index.catalog import rebase_for
from recsys.service import Recommender
from recsys.store import Store
from tests.index.test_catalog import FakeEncoder, FakeVectors, _add_items, _update


def _api_upsert(store: Store, settings: Settings, enc: FakeEncoder, start: int = 900) -> str:
    """What POST /v1/items does: store the item, then publish a delta serving it (Catalogue.index_changes)."""
    _add_items(store, 1, start=start)
    rep = build_from_catalog(store, settings, vectors=enc)
    assert rep["action"] == "delta"
    assert f"p{start:04d}" in IndexReader.open(index_root(settings))
    return str(rep["generation"])


def test_a_full_build_keeps_a_delta_published_while_it_read_the_catalogue(tmp_path: Path,
                                                                          sqlite_store: Store) -> None:
    settings = Settings(home=tmp_path / "home")
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    build_from_catalog(sqlite_store, settings, vectors=enc)
    published: list[str] = []

    def slow_snapshot(st: Settings, store: Store) -> FakeVectors:  # the API upsert lands while vectors are read
        vectors = enc(st, store)
        if not published:
            published.append(_api_upsert(store, st, enc))
        return vectors

    rep = build_from_catalog(sqlite_store, settings, mode="full", vectors=slow_snapshot)
    root = index_root(settings)
    served = IndexReader.open(root)
    assert "p0900" in served and len(served) == 61
    assert rep["generation"] == current_id(root) == served.generation_id and rep["items"] == 61
    assert rep["caught_up"]["changed"] == 1 and rep["base"] != published[0]
    assert build_from_catalog(sqlite_store, settings, vectors=enc)["action"] == "skipped"


def test_publish_keeps_a_delta_published_while_the_ranker_trained(tmp_path: Path, sqlite_store: Store) -> None:
    settings = Settings(home=tmp_path / "home")
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    build_from_catalog(sqlite_store, settings, vectors=enc)
    _update(sqlite_store, "p0010", content_hash="h999")  # something for `recsys build` to index
    rep = build_from_catalog(sqlite_store, settings, vectors=enc, switch=False)  # held, served with its ranker
    root = index_root(settings)
    api = _api_upsert(sqlite_store, settings, enc)  # ... while the ranker trains
    served = publish(root, rep["generation"], settings.index.keep_generations,
                     rebase_for(sqlite_store, settings, rep, vectors=enc))
    reader = IndexReader.open(root)
    assert served == current_id(root) == rep["generation"] and served != api
    assert "p0900" in reader and len(reader) == 61 and rep["caught_up"]["changed"] == 1
    assert not (root / layout.PENDING).exists()


def test_a_build_with_nothing_new_does_not_switch_back(tmp_path: Path, sqlite_store: Store) -> None:
    settings = Settings(home=tmp_path / "home")
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    build_from_catalog(sqlite_store, settings, vectors=enc)
    rep = build_from_catalog(sqlite_store, settings, vectors=enc, switch=False)
    assert rep["action"] == "skipped"
    api = _api_upsert(sqlite_store, settings, enc)
    root = index_root(settings)
    assert publish(root, rep["generation"], 3, rebase_for(sqlite_store, settings, rep, vectors=enc)) == api
    assert current_id(root) == api and "p0900" in IndexReader.open(root)


def test_recsys_build_serves_an_item_upserted_during_its_training(tmp_path: Path, sqlite_store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Jobs.build itself: the encoder stages and the training are stubbed, the upsert runs in training."""
    import recsys.encoders
    from recsys.index import catalog
    from recsys.jobs import Jobs

    settings = Settings(home=tmp_path / "home", database_url=sqlite_store.url)
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    build_from_catalog(sqlite_store, settings, vectors=enc)
    _update(sqlite_store, "p0010", content_hash="h999")

    def train(self: Jobs, reader: Any, progress: Any) -> dict[str, Any]:
        _api_upsert(sqlite_store, settings, enc)
        return {"ranker": "stub"}

    monkeypatch.setattr(catalog, "_default_vectors", enc)
    monkeypatch.setattr(recsys.encoders, "embed_catalog", lambda *a, **k: {"encoded": 0})
    monkeypatch.setattr(Jobs, "_encoder_fitted", lambda self: True)
    monkeypatch.setattr(Jobs, "_train", train)
    rec = Recommender(settings, sqlite_store)
    report = rec.jobs.build()
    assert report["index"]["action"] == "delta" and report["index"]["caught_up"]["changed"] == 1
    assert "p0900" in rec.index and "p0900" in IndexReader.open(index_root(settings))


def test_the_build_lock_is_reentrant_in_its_thread_only(tmp_path: Path) -> None:
    """A switch writes its catch-up delta under the lock it holds; other threads still wait for the outer release."""
    import threading

    from filelock import FileLock, Timeout

    def held_elsewhere() -> bool:
        try:
            with FileLock(tmp_path / "build.lock", timeout=0):
                return False
        except Timeout:
            return True

    seen: list[bool] = []
    with layout.build_lock(tmp_path):
        with layout.build_lock(tmp_path):  # no deadlock
            pass
        t = threading.Thread(target=lambda: seen.append(held_elsewhere()))
        t.start()
        t.join()
    assert seen == [True] and not held_elsewhere()
