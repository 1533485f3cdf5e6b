"""Damage of the same size (a flipped byte) in the generation a build starts from is never laundered.

A delta reads its base's metadata, dead rows and delta segment back and writes them with fresh checksums: damage
there became a generation `recsys index verify` called intact, serving wrong vectors or dropping items. And a build
over a damaged current generation said "skipped, up to date". Both now build a full generation and say why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.config import IndexSettings, Settings
from recsys.index import IndexReader, build_delta_generation, build_from_catalog, build_generation, index_root, layout
from recsys.index.build import DamagedBase
from recsys.store import Store
from tests.index.test_catalog import FakeEncoder, _add_items, _update


def _flip(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_delta_refuses_a_damaged_base_delta_segment_or_dead_rows(tmp_path: Path) -> None:
    """The reviewer's repro: one float of a delta row and one dead flag changed in the base, then another delta."""
    st = IndexSettings()
    rng = np.random.default_rng(0)
    build_generation(tmp_path, [f"i{j}" for j in range(100)], {"fused": rng.standard_normal((100, 8))},
                     encoder_id="e", settings=st)
    d1 = build_delta_generation(tmp_path, ["n0", "n1"], {"fused": rng.standard_normal((2, 8))}, encoder_id="e",
                                settings=st)
    gdir = layout.generations_dir(tmp_path) / d1.generation_id
    for name in ("seg1/fused.vectors.npy", "dead.npy"):
        _flip(gdir / name)
        with pytest.raises(DamagedBase, match=f"{d1.generation_id} is damaged \\({name}.*index build --full"):
            build_delta_generation(tmp_path, ["n9"], {"fused": rng.standard_normal((1, 8))}, encoder_id="e",
                                   settings=st)
        _flip(gdir / name)  # repaired: the next one checks the other file
    assert layout.current_id(tmp_path) == d1.generation_id and not list(layout.tmp_dir(tmp_path).iterdir())


@pytest.mark.parametrize("budget", [4096.0, 0.0])
def test_a_damaged_delta_segment_makes_the_next_build_full(tmp_path: Path, sqlite_store: Store, budget: float) -> None:
    """Whatever the hashing budget (over it, what a delta reads back is still hashed)."""
    settings = Settings(home=tmp_path / "home", index=IndexSettings(verify_on_load_mb=budget))
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    build_from_catalog(sqlite_store, settings, vectors=enc)
    _update(sqlite_store, "p0007", content_hash="h777")
    d1 = build_from_catalog(sqlite_store, settings, vectors=enc)
    assert d1["action"] == "delta"
    root = index_root(settings)
    _flip(layout.generations_dir(root) / d1["generation"] / "seg1" / "fused.vectors.npy")
    _update(sqlite_store, "p0008", content_hash="h888")  # any later upsert
    rep = build_from_catalog(sqlite_store, settings, vectors=enc)
    assert rep["action"] == "full" and "seg1/fused.vectors.npy" in rep["reason"]
    assert layout.current_id(root) == rep["generation"] and layout.verify(root) == []
    served = IndexReader.open(root)
    truth = enc(settings, sqlite_store)
    assert np.allclose(served.vector_of("p0007"), truth.fused[truth.item_ids.index("p0007")], atol=1e-6)


def test_a_damaged_current_generation_is_never_up_to_date(tmp_path: Path, sqlite_store: Store) -> None:
    settings = Settings(home=tmp_path / "home")
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    gen = build_from_catalog(sqlite_store, settings, vectors=enc)["generation"]
    root = index_root(settings)
    _flip(layout.generations_dir(root) / gen / "seg0" / "fused.vectors.npy", offset=-100)
    rep = build_from_catalog(sqlite_store, settings, vectors=enc)  # nothing changed, but it cannot be skipped
    assert rep["action"] == "full" and "seg0/fused.vectors.npy" in rep["reason"]
    assert layout.current_id(root) == rep["generation"] != gen and layout.verify(root) == []
    _add_items(sqlite_store, 1, start=60)  # and an upsert's delta is built over the intact one
    assert build_from_catalog(sqlite_store, settings, vectors=enc)["action"] == "delta"
    assert len(IndexReader.open(root)) == 61
