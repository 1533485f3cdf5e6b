"""A full build over a served generation from a database that does not know most of its items (another deployment's
database, or an empty one, on the shared data directory) is refused before anything is written; deleted items are
known (deleting is how a catalogue shrinks); ``force`` publishes anyway."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from recsys.config import Settings
from recsys.index import IndexReader, build_from_catalog, current_id, index_root, list_generations
from recsys.index.store_match import StoreMismatch
from recsys.store import Store
from recsys.store.tables import Item
from tests.index.fixtures import FakeVectors


def vectors(settings: Settings, store: Store) -> FakeVectors:
    """A vector per live item, derived from its id (the same item gets the same vector from any store)."""
    with store.session() as s:
        ids = list(s.scalars(select(Item.external_id).where(Item.deleted.is_(False)).order_by(Item.id)))
    v = np.stack([np.random.default_rng(int(hashlib.sha1(i.encode()).hexdigest()[:8], 16)).standard_normal(8)
                  for i in ids]).astype(np.float32)
    return FakeVectors(ids, v, v.copy(), np.zeros_like(v), np.zeros(len(ids), bool))


def add_items(store: Store, ids: list[str]) -> None:
    t = datetime(2026, 1, 1)
    with store.session() as s:
        for i in ids:
            s.add(Item(external_id=i, title=f"t {i}", category="c", price=1.0, in_stock=True, attributes={},
                       content_hash=f"h-{i}", created_at=t, updated_at=t))


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Store]:
    """A second database: the wrong one a misconfigured replica or job is pointed at."""
    s = Store(f"sqlite:///{tmp_path / 'other.db'}")
    s.upgrade()
    yield s
    s.dispose()


@pytest.fixture
def served(tmp_path: Path, store: Store) -> Settings:
    """A data directory serving a generation of 60 items built from ``store``."""
    settings = Settings(home=tmp_path / "home")
    add_items(store, [f"p{j:03d}" for j in range(60)])
    assert build_from_catalog(store, settings, vectors=vectors)["items"] == 60
    return settings


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_database_lacking_the_served_items_is_refused_and_nothing_published(
        served: Settings, other: Store, mode: str) -> None:
    root = index_root(served)
    before, gens = current_id(root), [m.generation_id for m in list_generations(root)]
    add_items(other, ["zz-new-1"])
    other.url = "postgresql+psycopg://shop:s3cret@db.example/wrong"  # as it is said (the engine stays SQLite)
    with pytest.raises(StoreMismatch) as e:
        build_from_catalog(other, served, vectors=vectors, mode=mode)
    msg = e.value.message
    assert "RECSYS_DATABASE_URL and RECSYS_HOME look mismatched: this database does not know 60 of the 60 items" in msg
    assert str(served.home.absolute()) in msg and "shop:***@db.example/wrong" in msg and "s3cret" not in msg
    assert "`recsys index build --force`" in msg and e.value.status == 409
    assert current_id(root) == before and [m.generation_id for m in list_generations(root)] == gens
    assert len(IndexReader.open(root)) == 60
    assert not any((root / "tmp").iterdir()) if (root / "tmp").is_dir() else True


def test_deleted_items_are_known_a_catalogue_may_shrink(served: Settings, store: Store) -> None:
    with store.session() as s:
        s.execute(update(Item).where(Item.external_id >= "p010").values(deleted=True))
    rep = build_from_catalog(store, served, vectors=vectors)
    assert rep["action"] == "full" and rep["items"] == 10


def test_a_few_unknown_items_are_not_refused(served: Settings, store: Store) -> None:
    with store.session() as s:  # a third of the catalogue gone without a trace: not a mismatched database
        for it in s.scalars(select(Item).where(Item.external_id >= "p040")):
            s.delete(it)
    assert build_from_catalog(store, served, vectors=vectors, mode="full")["items"] == 40


def test_force_publishes_the_other_catalogue(served: Settings, other: Store) -> None:
    add_items(other, ["zz-new-1"])
    rep = build_from_catalog(other, served, vectors=vectors, force=True)
    assert rep["action"] == "full" and rep["items"] == 1 and current_id(index_root(served)) == rep["generation"]
    add_items(other, ["zz-new-2", "zz-new-3"])  # the served one is this database's now: builds go on as usual
    assert build_from_catalog(other, served, vectors=vectors)["items"] == 3


def test_recsys_build_refuses_before_writing_anything_shared(served: Settings, other: Store) -> None:
    """`recsys build` on the wrong database stops before the encoder's heads or the vectors snapshot (shared under
    the data directory too) are written, not only at the index step; --force goes on."""
    from types import SimpleNamespace

    from recsys.jobs import Jobs

    add_items(other, ["zz-new-1"])
    before = sorted((str(p), p.stat().st_mtime_ns) for p in Path(served.home).rglob("*") if p.is_file())
    jobs = Jobs(SimpleNamespace(settings=served, store=other))  # type: ignore[arg-type]
    with pytest.raises(StoreMismatch, match="nothing was fitted, embedded or published"):
        jobs.build()
    after = sorted((str(p), p.stat().st_mtime_ns) for p in Path(served.home).rglob("*") if p.is_file()
                   if not p.name.endswith(".lock"))
    assert [f for f in after if f not in before] == []
