from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.index import IndexReader, ItemFilter, build_from_catalog, index_root, list_generations
from recsys.store import Store
from recsys.store.tables import Artifact, Item
from tests.index.fixtures import FakeVectors, clustered


class FakeEncoder:
    """Vectors derived from each item's content hash: changing the content changes the vector."""

    def __init__(self, d: int = 16) -> None:
        self.d = d
        self.calls = 0

    def __call__(self, settings: Settings, store: Store) -> FakeVectors:
        self.calls += 1
        with store.session() as s:
            rows = s.execute(select(Item.external_id, Item.content_hash).where(Item.deleted.is_(False))
                             .order_by(Item.id)).all()
        ids = [r[0] for r in rows]
        fused = np.stack([clustered(1, self.d, seed=int(r[1][1:]))[0] for r in rows])
        has = np.array([int(r[0][1:]) % 2 == 0 for r in rows])
        return FakeVectors(ids, fused, fused.copy(), np.where(has[:, None], fused, 0), has)


def _add_items(store: Store, n: int, start: int = 0) -> None:
    t0 = datetime(2026, 1, 1)
    with store.session() as s:
        for j in range(start, start + n):
            s.add(Item(external_id=f"p{j:04d}", title=f"t{j}", category="rare" if j % 50 == 0 else "common",
                       price=float(j), in_stock=True, attributes={"brand": f"b{j % 3}"}, content_hash=f"h{j}",
                       created_at=t0, updated_at=t0 + timedelta(seconds=j)))


def _update(store: Store, external_id: str, **values: Any) -> None:
    with store.session() as s:
        it = s.scalars(select(Item).where(Item.external_id == external_id)).one()
        for k, v in values.items():
            setattr(it, k, v)
        it.updated_at = datetime(2027, 1, 1)


def test_full_then_skip_then_delta_then_full(tmp_path: Path, sqlite_store: Store) -> None:
    settings = Settings(home=tmp_path / "home")
    enc = FakeEncoder()
    _add_items(sqlite_store, 200)
    _update(sqlite_store, "p0003", hidden=True)
    _update(sqlite_store, "p0004", deleted=True)
    rep = build_from_catalog(sqlite_store, settings, vectors=enc)
    assert rep["action"] == "full" and rep["items"] == 199 and rep["factory"] == "Flat"
    r = IndexReader.open(index_root(settings), encoder_id="fake-enc", dim=16)
    assert "p0003" in r and "p0004" not in r and len(r) == 199  # hidden items stay indexed: queries exclude them
    assert r.search_one(r.vector_of("p0050"), 4, filter=ItemFilter.of(categories=["rare"]))[0][0] == "p0050"
    assert len(r.search_one(r.vector_of("p0001"), 10, filter=ItemFilter.of(attributes={"brand": "b1"}))) == 10
    assert len(r.search_one(r.vector_of("p0002"), 5, modality="image")) == 5
    with sqlite_store.session() as s:
        assert s.scalars(select(Artifact.version).where(Artifact.kind == "index")).all() == [rep["generation"]]

    assert build_from_catalog(sqlite_store, settings, vectors=enc)["action"] == "skipped"

    # a new item, a changed one, a deleted one, a hidden one, an unhidden one: a delta
    _add_items(sqlite_store, 1, start=500)
    _update(sqlite_store, "p0010", content_hash="h999", category="rare")
    _update(sqlite_store, "p0012", deleted=True)
    _update(sqlite_store, "p0011", hidden=True)
    _update(sqlite_store, "p0003", hidden=False)
    rep2 = build_from_catalog(sqlite_store, settings, vectors=enc)
    assert rep2["action"] == "delta" and rep2["items"] == 199  # 199 + p0500 - p0012
    r2 = IndexReader.open(index_root(settings))
    assert "p0500" in r2 and "p0003" in r2 and "p0011" in r2 and "p0012" not in r2
    assert np.allclose(r2.vector_of("p0010"), clustered(1, 16, seed=999)[0], atol=1e-6)
    rare = {i for i, _ in r2.search_one(r2.vector_of("p0010"), 10, filter=ItemFilter.of(categories=["rare"]))}
    assert "p0010" in rare
    assert r2.search_one(r2.vector_of("p0500"), 1)[0][0] == "p0500"

    rep3 = build_from_catalog(sqlite_store, settings, mode="full", factory="HNSW8,Flat", vectors=enc)
    assert rep3["action"] == "full" and rep3["factory"] == "HNSW8,Flat"
    assert [m.kind for m in list_generations(index_root(settings))] == ["full", "delta", "full"]


def test_encoder_change_forces_full_build(tmp_path: Path, sqlite_store: Store) -> None:
    settings = Settings(home=tmp_path / "home")
    _add_items(sqlite_store, 30)
    build_from_catalog(sqlite_store, settings, vectors=FakeEncoder())

    class Other(FakeEncoder):
        def __call__(self, settings: Settings, store: Store) -> FakeVectors:
            v = super().__call__(settings, store)
            v.encoder_id = "fake-enc-2"
            return v

    rep = build_from_catalog(sqlite_store, settings, vectors=Other())
    assert rep["action"] == "full"
    assert IndexReader.open(index_root(settings), encoder_id="fake-enc-2").manifest.encoder_id == "fake-enc-2"


@dataclass
class Snapshot(FakeVectors):
    content_hash: list[str] | None = None


def test_items_written_while_embedding_are_the_next_runs_to_index(tmp_path: Path, sqlite_store: Store) -> None:
    """Another writer adds an item and changes one between this run's embed and its build (replicas publishing at
    once): the build neither fails nor keeps stale vectors for good; the next run indexes both."""
    settings = Settings(home=tmp_path / "home")
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    build_from_catalog(sqlite_store, settings, vectors=enc)
    before = enc(settings, sqlite_store)
    with sqlite_store.session() as s:
        hashes = [s.scalars(select(Item.content_hash).where(Item.external_id == i)).one() for i in before.item_ids]
    _update(sqlite_store, "p0005", content_hash="h999")  # written after the embed read it
    _add_items(sqlite_store, 1, start=60)                # likewise
    stale = Snapshot(before.item_ids, before.fused, before.text, before.image, before.has_image,
                     content_hash=hashes)
    rep = build_from_catalog(sqlite_store, settings, vectors=lambda st, store: stale)
    assert rep["action"] == "delta" and rep["without_vectors"] == 1 and rep["items"] == 60
    r = IndexReader.open(index_root(settings), encoder_id="fake-enc", dim=16)
    assert "p0060" not in r and np.allclose(r.vector_of("p0005"), before.fused[5], atol=1e-6)

    fresh = enc(settings, sqlite_store)
    rep = build_from_catalog(sqlite_store, settings, vectors=enc)
    assert rep["action"] == "delta" and rep["without_vectors"] == 0 and rep["items"] == 61
    r = IndexReader.open(index_root(settings), encoder_id="fake-enc", dim=16)
    assert "p0060" in r and np.allclose(r.vector_of("p0005"), fresh.fused[fresh.item_ids.index("p0005")], atol=1e-6)
    assert not np.allclose(fresh.fused[5], before.fused[5])


def test_damaged_vectors_are_left_out_never_served_as_nan(tmp_path: Path, sqlite_store: Store,
                                                         monkeypatch: Any) -> None:
    from recsys.errors import IndexError_

    settings = Settings(home=tmp_path / "home")
    _add_items(sqlite_store, 50)
    build_from_catalog(sqlite_store, settings, vectors=FakeEncoder())
    r = IndexReader.open(index_root(settings), encoder_id="fake-enc", dim=16)
    search_part = r._search_part

    def damaged(*args: Any) -> tuple[np.ndarray, np.ndarray]:  # as a vector file with ten NaN rows scores them
        scores, rows = search_part(*args)
        return np.where(rows < 10, np.nan, scores), rows

    monkeypatch.setattr(r, "_search_part", damaged)
    hits = r.search_one(r.vector_of("p0020"), 50)
    assert len(hits) == 40 and all(np.isfinite(s) for _, s in hits)
    monkeypatch.setattr(r, "vector_of", lambda item_id, modality="fused": np.full(16, np.nan, np.float32))
    with pytest.raises(IndexError_, match="damaged fused vector.*index build --full"):
        r.similar("p0001", 5)


def test_a_damaged_generation_is_named_rebuilt_and_never_rolled_back_to(tmp_path: Path, sqlite_store: Store) -> None:
    from recsys.errors import IndexError_
    from recsys.index import layout

    settings = Settings(home=tmp_path / "home")
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    first = build_from_catalog(sqlite_store, settings, vectors=enc, mode="full")["generation"]
    second = build_from_catalog(sqlite_store, settings, vectors=enc, mode="full")["generation"]
    root = index_root(settings)
    gdir = layout.generations_dir(root)
    victim = next(p for p in (gdir / first).rglob("*.faiss"))
    victim.write_bytes(victim.read_bytes()[:100])  # truncated
    with pytest.raises(IndexError_, match=f"generation {first} is damaged: seg0/.*faiss is missing or differs.*"
                                          "index rollback"):
        IndexReader.open(root, generation=first)
    with pytest.raises(IndexError_, match=f"generation {first} is damaged"):
        layout.rollback(root, first)
    assert layout.current_id(root) == second
    next(p for p in (gdir / second).rglob("*.faiss")).unlink()  # the served one loses a file
    rep = build_from_catalog(sqlite_store, settings, vectors=enc)  # nothing changed, but it cannot be skipped
    assert rep["action"] == "full" and layout.current_id(root) == rep["generation"] != second
    assert len(IndexReader.open(root)) == 60

    # a truncated base file is not linked into a delta: the change is published by a full build, which reads
    third = rep["generation"]
    victim = next(p for p in (gdir / third).rglob("*.faiss"))
    victim.write_bytes(victim.read_bytes()[:100])
    _add_items(sqlite_store, 1, start=60)
    rep = build_from_catalog(sqlite_store, settings, vectors=enc)
    assert rep["action"] == "full" and len(IndexReader.open(root)) == 61 and not layout.verify(root)


def test_a_delta_keeps_its_base_checksums(tmp_path: Path, sqlite_store: Store) -> None:
    """A base file damaged before a delta is built on it (same size: only hashing sees it, and a base over the
    hashing budget is not hashed whole) fails the delta's verification too: its manifest takes the base's checksums,
    not the damaged file's."""
    from recsys.config import IndexSettings
    from recsys.index import layout

    settings = Settings(home=tmp_path / "home", index=IndexSettings(verify_on_load_mb=0))
    enc = FakeEncoder()
    _add_items(sqlite_store, 60)
    base = build_from_catalog(sqlite_store, settings, vectors=enc, mode="full")["generation"]
    root = index_root(settings)
    linked = next(p for p in (layout.generations_dir(root) / base / "seg0").glob("*.faiss"))
    linked.write_bytes(b"\0" * linked.stat().st_size)
    _add_items(sqlite_store, 1, start=60)
    rep = build_from_catalog(sqlite_store, settings, vectors=enc, mode="delta")
    assert rep["action"] == "delta" and layout.current_id(root) == rep["generation"]
    assert layout.verify(root) == [f"seg0/{linked.name}"]


def test_a_flipped_bit_is_refused_when_loaded_not_served(tmp_path: Path, sqlite_store: Store) -> None:
    """A FAISS file with one changed byte (same size) loads and answers impossible scores unless its checksum is
    checked on load; above the hashing budget only sizes are compared."""
    from recsys.config import IndexSettings
    from recsys.errors import IndexError_
    from recsys.index import layout

    settings = Settings(home=tmp_path / "home")
    _add_items(sqlite_store, 60)
    gen = build_from_catalog(sqlite_store, settings, vectors=FakeEncoder(), mode="full")["generation"]
    root = index_root(settings)
    victim = next((layout.generations_dir(root) / gen).rglob("fused.faiss"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    with pytest.raises(IndexError_, match=f"generation {gen} is damaged: .*fused.faiss is missing or differs from the "
                                          "checksums.*no other generation to roll back to.*index build --full"):
        IndexReader.open(root)
    loaded = IndexReader.open(root, settings=IndexSettings(verify_on_load_mb=0))  # sizes only: it loads
    assert len(loaded) == 60


def test_vectors_that_changed_under_the_same_content_are_indexed_again(tmp_path: Path, sqlite_store: Store) -> None:
    # other text fields, modality weights or a generated description change the vectors, not the content hash: the
    # build said "skipped, up to date" and served the old vectors
    settings = Settings(home=tmp_path / "home")
    _add_items(sqlite_store, 60)
    enc = FakeEncoder()
    build_from_catalog(sqlite_store, settings, vectors=enc)
    assert build_from_catalog(sqlite_store, settings, vectors=enc)["action"] == "skipped"

    class Reweighted(FakeEncoder):
        def __call__(self, settings: Settings, store: Store) -> FakeVectors:
            v = super().__call__(settings, store)
            v.fused[7] = -v.fused[7]  # one item's fused vector moved
            return v

    rep = build_from_catalog(sqlite_store, settings, vectors=Reweighted())
    assert rep["action"] == "delta"
    r = IndexReader.open(index_root(settings))
    assert np.allclose(r.vector_of("p0007"), -clustered(1, 16, seed=7)[0], atol=1e-6)
    assert build_from_catalog(sqlite_store, settings, vectors=Reweighted())["action"] == "skipped"
