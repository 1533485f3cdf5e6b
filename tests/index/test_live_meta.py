"""Filters see the catalogue as it is now: a feed through ``recsys import items`` (no new generation) that changes an
indexed item's price, category, stock or attributes is filtered on at once, in text search (every mode), similar
items, more-like-these, recommendations and trending, and the unknown-filter-values suggestions know a new category.
Before, every filter evaluated the generation's build-time metadata: the result showed the new price and passed the
old filter (audit D1)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from recsys.config import Settings
from recsys.index import ItemFilter, ItemMeta, build_from_catalog
from recsys.service import Recommender
from recsys.store import Store
from recsys.store.importers import run_import
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from tests.conftest import run_async
from tests.index.fixtures import FakeVectors, store_vectors

D = 8
MODES = ("hybrid", "lexical", "vector")


def _vector(item_id: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(item_id.encode()))
    v = rng.standard_normal(D).astype(np.float32)
    if item_id.startswith("d"):
        v[0] += 3.0  # dresses lean to the direction "dress" is encoded to
    return v / np.linalg.norm(v)


def _vectors(settings: Settings, store: Store) -> FakeVectors:
    return store_vectors(store, _vector)


class FakeTextEncoder:
    id = "fake-enc"

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([np.eye(D, dtype=np.float32)[0 if "dress" in t else 1] for t in texts])


class AllowedRanker:
    """Ranks what a list may hold (``allowed``, by id): the filter as the real request path applies it."""

    table = SimpleNamespace(rows_of=lambda ids: np.full(len(ids), -1, np.int64))  # knows no item
    last_timings: dict[str, float] = {}
    stats = SimpleNamespace(uncounted=lambda user_id, first_event_id=None: (math.inf, math.inf))

    def recommend(self, hist: Any, n: int, *, allowed: list[str] | None = None, **_: Any) -> list[Any]:
        assert allowed is not None, "a filtered list is ranked over the allowed items"
        return [SimpleNamespace(item_id=i, score=1.0, sources=["fake"], explanation=None) for i in sorted(allowed)][:n]


@pytest.fixture
def settings(store: Store, tmp_path: Path) -> Settings:
    # 20 dresses d00..d19 (price j, red, in stock) and 20 tops t00..t19 (price 100 + j, blue)
    records = [ItemRecord(f"d{j:02d}", f"Plain dress {j}", "A dress.", "dress", price=float(j),
                          attributes={"colour": "red"}) for j in range(20)]
    records += [ItemRecord(f"t{j:02d}", f"Basic top {j}", "A top.", "top", price=100.0 + j,
                           attributes={"colour": "blue"}) for j in range(20)]
    with store.session() as s:
        upsert_items(s, records, TableCounts())
    settings = Settings(home=tmp_path / "home", database_url=store.url)
    build_from_catalog(store, settings, vectors=_vectors)
    return settings


def _serving(settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> Recommender:
    rec = Recommender(settings, store)
    rec.use_encoder(FakeTextEncoder())  # type: ignore[arg-type]
    monkeypatch.setattr(rec, "_ranker_of", lambda served, rules: AllowedRanker())
    return rec


def _feed(settings: Settings, store: Store, tmp_path: Path, rows: str, name: str = "feed.csv") -> None:
    """A feed of item_id,price,category,in_stock,colour (the last an attribute), imported as `recsys import items`."""
    path = tmp_path / name
    path.write_text("item_id,price,category,in_stock,colour\n" + rows)
    report = run_import(store, "items", path, settings=settings)
    assert report.counts("items").updated == rows.count("\n"), report


def _ids(items: list[Any]) -> set[str]:
    return {it.item_id for it in items}


CHEAP_DRESSES = ItemFilter.of(categories=["dress"], price_max=40.0)
LAMPS = ItemFilter.of(categories=["Lamp"])  # values match ignoring case
OUT_OF_STOCK = ItemFilter.of(in_stock=False)
BLUE_DRESSES = ItemFilter.of(categories=["dress"], attributes={"colour": "blue"})
RED_DRESSES = ItemFilter.of(categories=["dress"], attributes={"colour": "red"})


def _changed(settings: Settings, store: Store, tmp_path: Path) -> None:
    """d01 becomes a 500.00 lamp, d02 goes out of stock, d03 turns blue; nothing is built afterwards."""
    _feed(settings, store, tmp_path, "d01,500,lamp,true,red\nd02,2,dress,false,red\nd03,3,dress,true,blue\n")


def test_search_in_every_mode_filters_on_the_fed_values(settings: Settings, store: Store, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _serving(settings, store, monkeypatch)
    assert "d01" in _ids(rec.search_text("dress", 40, filter=CHEAP_DRESSES))  # served, and filtered on, before
    _changed(settings, store, tmp_path)
    for mode in MODES:
        cheap = rec.search_text("dress", 40, mode=mode, filter=CHEAP_DRESSES)
        assert "d01" not in _ids(cheap) and len(cheap) == 19, mode  # shown at 500.00 in lamp: it no longer passes
        assert all(it.item["price"] <= 40 and it.item["category"] == "dress" for it in cheap), mode
        assert _ids(rec.search_text("dress", 40, mode=mode, filter=LAMPS)) == {"d01"}, mode
        assert _ids(rec.search_text("dress", 40, mode=mode, filter=OUT_OF_STOCK)) == {"d02"}, mode
        assert _ids(rec.search_text("dress", 40, mode=mode, filter=BLUE_DRESSES)) == {"d03"}, mode
        assert "d03" not in _ids(rec.search_text("dress", 40, mode=mode, filter=RED_DRESSES)), mode
    assert LAMPS.unknown_values(rec.index.meta) == []  # the explorer's and the API's "no item has" suggestions
    assert ItemFilter.of(categories=["lamps"]).unknown_values(rec.index.meta)[0]["closest"] == ["lamp"]
    assert _ids(rec.search_text("dress", 40)) >= {"d01", "d02", "d03"}  # unfiltered: nothing left out
    # a stock and attribute feed alone moves the version too (migration 0011)
    _feed(settings, store, tmp_path, "d05,5,dress,false,green\n", "stock.csv")
    for mode in MODES:
        assert _ids(rec.search_text("dress", 40, mode=mode, filter=OUT_OF_STOCK)) == {"d02", "d05"}, mode
        assert _ids(rec.search_text("dress", 40, mode=mode, filter=ItemFilter.of(attributes={"colour": "Green"}))) \
            == {"d05"}, mode


def test_similar_and_more_like_these_filter_on_the_fed_values(settings: Settings, store: Store, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _serving(settings, store, monkeypatch)
    assert rec.similar("d05", 10, filter=LAMPS) == []
    _changed(settings, store, tmp_path)
    assert _ids(rec.similar("d05", 10, filter=LAMPS)) == {"d01"}
    assert "d01" not in _ids(rec.similar("d05", 40, filter=CHEAP_DRESSES))
    assert _ids(rec.more_like_these({"d05": 1.0}, k=10, filter=OUT_OF_STOCK)) == {"d02"}


def test_recommendations_and_trending_filter_on_the_fed_values(settings: Settings, store: Store, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _serving(settings, store, monkeypatch)
    assert _ids(rec.recommend("u1", 10, filter=LAMPS)) == set()
    _changed(settings, store, tmp_path)
    assert _ids(rec.recommend("u1", 10, filter=LAMPS)) == {"d01"}
    assert _ids(rec.recommend("u1", 10, filter=BLUE_DRESSES)) == {"d03"}
    assert "d01" not in _ids(rec.recommend("u1", 40, filter=CHEAP_DRESSES))
    assert _ids(rec.trending(10, filter=OUT_OF_STOCK)) == {"d02"}
    assert _ids(rec.recommend_for_events([{"item_id": "d05", "type": "view"}], 10, filter=LAMPS)) == {"d01"}
    # a cached list is keyed by the item-details version: the next feed is a new key, ranked on its values
    _feed(settings, store, tmp_path, "d04,4,lamp,true,red\n", "feed2.csv")
    assert _ids(rec.recommend("u1", 10, filter=LAMPS)) == {"d01", "d04"}
    items, _ = run_async(rec.arecommend("u2", 10, filter=ItemFilter.of(categories=["lamp"], price_max=10.0)))
    assert _ids(items) == {"d04"}


def test_a_recommender_started_after_the_feed_knows_the_new_values(settings: Settings, store: Store, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A command (`recsys search --filter category=lamp`) checks its filter's values against the metadata before it
    searches: a generation loaded after the feed is patched at load."""
    _changed(settings, store, tmp_path)
    rec = _serving(settings, store, monkeypatch)
    assert LAMPS.unknown_values(rec.index.meta) == [] and rec.index.meta_version is not None
    assert _ids(rec.search_text("dress", 40, mode="lexical", filter=LAMPS)) == {"d01"}


def test_unchanged_catalogue_reads_no_changes_and_unfiltered_requests_no_version(
        settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.serving import live_meta

    rec = _serving(settings, store, monkeypatch)
    reader = rec.index  # loaded: synced once (the items at the build's newest update time, with their values)
    version = reader.meta_version
    assert version is not None and np.array_equal(reader.meta.category, reader.base_meta.category)
    reads: list[int] = []
    real = live_meta.details_version
    monkeypatch.setattr(live_meta, "details_version", lambda s: reads.append(1) or real(s))
    rec.search_text("dress", 10)
    rec.similar("d05", 10)
    assert reads == []  # an unfiltered request never consults the metadata
    rec.search_text("dress", 10, filter=LAMPS)
    assert reads == [1] and reader.meta_version == version and not live_meta.sync(store, reader, version)


def test_patched_replaces_the_values_of_the_changed_rows_only() -> None:
    meta = ItemMeta.build(["a", "b", "c"], category=["x", "y", None], price=[1.0, 2.0, None],
                          in_stock=[True, True, False], attributes=[{"colour": "red"}, {}, None],
                          content_hash=["h1", "h2", "h3"],
                          updated_at=["2026-01-01T00:00:00", "2026-01-02 00:00:00.500000", None])
    assert meta.vocabulary("category").unknown(["Lamp"]) == [("Lamp", [])]  # coded before the patch
    new = meta.patched([("b", "Lamp", 500, False, {"colour": "blue"}), ("zz", "ignored", 1.0, True, {}),
                        ("c", "z", None, True, None)])
    assert new.item_ids.tolist() == ["a", "b", "c"] and new.content_hash.tolist() == ["h1", "h2", "h3"]
    assert new.updated_at.tolist() == meta.updated_at.tolist()
    assert new.category.tolist() == ["x", "Lamp", "z"] and new.in_stock.tolist() == [True, False, True]
    assert new.price[:2].tolist() == [1.0, 500.0] and math.isnan(new.price[2])
    assert new.attributes == [{"colour": "red"}, {"colour": "blue"}, {}]
    assert ItemFilter.of(categories=["lamp"]).mask(new).tolist() == [False, True, False]  # coded again
    assert ItemFilter.of(attributes={"colour": "blue"}).mask(new).tolist() == [False, True, False]
    assert meta.category.tolist() == ["x", "y", None] and meta.attributes[1] == {}  # the base is left as it was
    from datetime import datetime

    assert meta.newest_update == datetime(2026, 1, 2, 0, 0, 0, 500000)  # compared as times: " " < "T" as text
    assert ItemMeta.build(["a"]).newest_update is None
