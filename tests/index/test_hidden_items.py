"""Hidden items stay indexed and every query leaves them out while hidden, so hide and unhide both act at once.

Builds used to drop hidden items from the index: after any build (an API upsert's delta is one) an unhidden item
was found by nothing until another build, and `similar` of a hidden item (its page still exists) said "not indexed
yet"."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recsys.config import Settings
from recsys.index import build_from_catalog
from recsys.service import Recommender
from recsys.store import Store
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from recsys.store.items import set_flags
from tests.index.test_hybrid import AXES, FakeTextEncoder, _vectors

HIDDEN = "d01"
N = 60


class FakeEncoder(FakeTextEncoder):
    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return np.stack([AXES[0] for _ in images])  # every picture looks like a dress


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def rec(store: Store, tmp_path: Path) -> Recommender:
    return _recommender(store, tmp_path)


def _recommender(store: Store, tmp_path: Path, **settings: object) -> Recommender:
    records = [ItemRecord(f"d{j:02d}", "Zebra dress" if f"d{j:02d}" == HIDDEN else f"Plain dress {j}", "A dress.",
                          "dress") for j in range(30)]
    records += [ItemRecord(f"t{j:02d}", f"Basic top {j}", "A top.", "top") for j in range(30)]
    with store.session() as s:
        upsert_items(s, records, TableCounts())
    settings = Settings(home=tmp_path / "home", database_url=store.url, **settings)  # type: ignore[arg-type]
    build_from_catalog(store, settings, vectors=_vectors)
    r = Recommender(settings, store)
    r.use_encoder(FakeEncoder())  # type: ignore[arg-type]
    return r


def _flag(rec: Recommender, hidden: bool) -> None:
    with rec.store.session() as s:  # what `recsys items hide|unhide` and the API do
        set_flags(s, [HIDDEN], hidden=hidden)


def _every_result(rec: Recommender, k: int) -> dict[str, list[str]]:
    """Every query path of the index, asked for ``k`` items."""
    out = {f"text/{m}": [h.item_id for h in rec.search_text("zebra dress", k, mode=m)]
           for m in ("vector", "hybrid", "lexical")}
    out["text/id"] = [h.item_id for h in rec.search_text(HIDDEN, k)]
    out["text/text-tower"] = [h.item_id for h in rec.search_text("dress", k, modality="text")]
    out["image"] = [h.item_id for h in rec.search_image(_png(), k)]
    out["similar"] = [h.item_id for h in rec.similar("d02", k)]
    out["more_like_these"] = [h.item_id for h in rec.more_like_these({"d02": 1.0}, k=k)]
    return out


def test_hide_build_unhide_acts_at_once(rec: Recommender) -> None:
    _flag(rec, hidden=True)
    report = build_from_catalog(rec.store, rec.settings, vectors=_vectors)  # any build while it is hidden
    rec.refresh()
    assert report["items"] == N and HIDDEN in rec.index
    for path, ids in _every_result(rec, N).items():
        assert HIDDEN not in ids, path
        # k filled with what may be shown: all but the hidden one (and the example, for similar and more-like)
        assert len(ids) == N - (2 if path in ("similar", "more_like_these") else 1), path
    assert [h.item_id for h in rec.search_text("zebra", 5, mode="lexical")][:1] != [HIDDEN]
    page = [h.item_id for h in rec.similar(HIDDEN, 5)]  # a hidden item's page still shows similar items
    assert len(page) == 5 and HIDDEN not in page

    _flag(rec, hidden=False)  # no build in between
    assert rec.search_text("zebra", 5)[0].item_id == HIDDEN
    assert rec.search_text("zebra", 5, mode="lexical")[0].item_id == HIDDEN
    assert rec.search_text(HIDDEN, 5)[0].item_id == HIDDEN
    for path, ids in _every_result(rec, N).items():
        assert HIDDEN in ids, path
    assert len(rec.similar(HIDDEN, 5)) == 5


def test_deleted_items_leave_the_index_at_the_next_build(rec: Recommender) -> None:
    with rec.store.session() as s:
        set_flags(s, [HIDDEN], deleted=True)
    assert build_from_catalog(rec.store, rec.settings, vectors=_vectors)["items"] == N - 1
    rec.refresh()
    assert HIDDEN not in rec.index


def test_recommendations_leave_out_hidden_items(sqlite_store: Store, tmp_path: Path) -> None:
    """The ranker's catalogue holds the hidden item now too: hidden when the ranker was loaded or after, it is in no
    list (a shopper who bought it, the trending list it tops)."""
    rec = _recommender(sqlite_store, tmp_path, ranking={"params": {"epochs": 1, "hidden": 16}})
    events = [{"user_id": f"u{u}", "item_id": HIDDEN if e % 2 else f"d{(u + e) % 30:02d}", "type": "purchase",
               "timestamp": f"2026-01-{1 + e:02d}T00:00:00Z"} for u in range(20) for e in range(6)]
    rec.catalogue.ingest_events(events)
    rec.jobs.train()
    assert rec.trending(5)[0].item_id == HIDDEN

    def lists() -> list[list[str]]:
        return [[r.item_id for r in rec.trending(N)], [r.item_id for r in rec.recommend("u1", 20)],
                [r.item_id for r in rec.recommend_for_events([{"item_id": "d02", "type": "view"}], 20)]]

    _flag(rec, hidden=True)  # after the ranker was loaded
    assert all(HIDDEN not in ids and ids for ids in lists())
    build_from_catalog(rec.store, rec.settings, vectors=_vectors)
    assert rec.refresh() and HIDDEN in rec.index  # a new generation, its ranker loaded while the item is hidden
    assert all(HIDDEN not in ids and ids for ids in lists())

    _flag(rec, hidden=False)  # the served ranker was loaded while it was hidden: unhiding still acts at once
    assert rec.trending(5)[0].item_id == HIDDEN
    assert all(HIDDEN in ids for ids in lists()[:2])
