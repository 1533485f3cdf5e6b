"""A forced factory (``--factory`` / ``RECSYS_INDEX__FACTORY``): applied to the modalities it can train (few items
with a photo do not fail the whole build), and a setting other than the served generation's makes the build full,
the way another encoder does, without making every later build full."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.config import IndexSettings, Settings
from recsys.errors import ValidationFailed
from recsys.index import build_from_catalog, build_generation, index_root, list_generations
from recsys.store import Store
from recsys.store.tables import Item
from tests.index.fixtures import FakeVectors, clustered, ids, store_vectors

FORCED = "IVF16,Flat"  # trains on the 300 fused and text vectors, not on the 10 images


def test_a_modality_too_small_for_the_forced_factory_falls_back(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    v = clustered(300)
    has_image = np.arange(300) % 30 == 0
    with caplog.at_level(logging.WARNING, logger="recsys.index.build"):
        m = build_generation(tmp_path, ids(300), {"fused": v, "text": v, "image": v}, encoder_id="e",
                             present={"image": has_image}, settings=IndexSettings(factory=FORCED))
    mods = m.segments[0]["modalities"]
    assert m.factory == FORCED and mods["text"]["factory"] == FORCED
    assert mods["image"] == {**mods["image"], "factory": "Flat", "count": 10, "requested": FORCED}
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("image" in s and repr(FORCED) in s and "'Flat'" in s for s in said), said

    with pytest.raises(ValidationFailed, match="modality 'fused'"):  # what still fails says which index it was
        build_generation(tmp_path, ids(300), {"fused": v}, encoder_id="e", factory="IVF16,PQ5")


def _add_items(store: Store, n: int) -> None:
    t0 = datetime(2026, 1, 1)
    with store.session() as s:
        for j in range(n):
            s.add(Item(external_id=f"p{j:04d}", title=f"t{j}", content_hash=f"h{j}", created_at=t0,
                       updated_at=t0 + timedelta(seconds=j)))


def _vectors(settings: Settings, store: Store) -> FakeVectors:
    """Every item has text; one in 30 has a photo (10 of 300: too few for IVF16)."""
    v = store_vectors(store, lambda i: clustered(1, seed=int(i[1:]))[0])
    v.has_image = np.array([int(i[1:]) % 30 == 0 for i in v.item_ids])
    v.image = np.where(v.has_image[:, None], v.image, 0).astype(np.float32)
    return v


def test_a_configured_factory_other_than_the_served_ones_makes_the_build_full(tmp_path: Path,
                                                                              sqlite_store: Store) -> None:
    auto = Settings(home=tmp_path / "home")
    forced = Settings(home=tmp_path / "home", index=IndexSettings(factory=FORCED))
    _add_items(sqlite_store, 300)
    assert build_from_catalog(sqlite_store, auto, vectors=_vectors)["factory"] == "Flat"

    rep = build_from_catalog(sqlite_store, forced, vectors=_vectors)  # was "skipped", the setting unused
    assert rep["action"] == "full" and rep["factory"] == FORCED
    assert repr(FORCED) in rep["reason"] and "'Flat'" in rep["reason"]
    # its image index fell back to Flat: the served generation is still the configured factory's
    assert build_from_catalog(sqlite_store, forced, vectors=_vectors)["action"] == "skipped"
    with sqlite_store.session() as s:
        s.scalars(select(Item).where(Item.external_id == "p0007")).one().updated_at = datetime(2027, 1, 1)
    assert build_from_catalog(sqlite_store, forced, vectors=_vectors)["action"] == "delta"
    big = Settings(home=tmp_path / "home", index=IndexSettings(factory="IVF512,Flat"))  # more lists than items
    rep = build_from_catalog(sqlite_store, big, vectors=_vectors)
    assert rep["action"] == "full" and rep["factory"] == "Flat"  # every modality fell back
    assert build_from_catalog(sqlite_store, big, vectors=_vectors)["action"] == "skipped"  # not full each time
    # unset, the automatic choice never forces a rebuild of what a factory built
    assert build_from_catalog(sqlite_store, auto, vectors=_vectors)["action"] == "skipped"
    rep = build_from_catalog(sqlite_store, auto, factory="HNSW8,Flat", vectors=_vectors)  # --factory alike
    assert rep["action"] == "full" and rep["factory"] == "HNSW8,Flat"
    assert list_generations(index_root(auto))[-1].segments[0]["modalities"]["fused"]["requested"] == "HNSW8,Flat"
