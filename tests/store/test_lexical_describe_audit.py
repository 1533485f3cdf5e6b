"""Audit fixes (lexical search and descriptions from images), on SQLite and PostgreSQL where a store is involved:
accented stop words match nothing, a describe run never writes a description of an item's replaced images (or of an
item deleted meanwhile), vocabularies refuse values that would be written literally or silently ignored, and the
API's text search documents the ``generated`` source."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from sqlalchemy import select, text

from recsys.config import Settings
from recsys.describe import describe_items, load_vocabulary, run
from recsys.describe.vocabulary import Vocabulary, parse_vocabulary
from recsys.encoders.encoder import TowerEncoder
from recsys.encoders.text import ItemRecord as CatalogueItem
from recsys.errors import ValidationFailed
from recsys.store import Store
from recsys.store.descriptions import generated_texts
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from recsys.store.items import set_flags
from recsys.store.lexical import query_terms
from recsys.store.tables import Item
from tests.store.test_descriptions import _find, _import


# -- D1: accented stop words ----------------------------------------------------------------------------------------
def test_accented_stop_words_match_nothing_like_their_plain_spelling(store: Store) -> None:
    """FTS5 folds "thé" to "the", which SQLite's documents index: it matched every item with "the" there."""
    _import(store, [ItemRecord("a1", "Green tea tin", "Loose leaf tea in a tin."),
                    ItemRecord("a2", "Wool scarf", "Warm scarf with the softest wool and a fringe."),
                    ItemRecord("a3", "Café table", "A table for the terrace with an arm.")])
    marked = ("a\u0300", "the\u0331", "the\u094d", "the\u0903", "ſo")  # FTS5 folds or drops a mark; a long s
    for query in ("the", "thé", "à", "wíth", "ÁND", *marked):
        assert _find(store, query) == [], query
    assert query_terms("Thé vert à la café") == ["vert", "la", "café"]  # other accented words stay
    assert _find(store, "thé café") == ["a3"]  # the stop word drops out, the rest is searched


# -- D2: images changed (or the item deleted) while describe runs --------------------------------------------------
VOCAB = {"name": "audit", "sentence": "{colour}", "min_confidence": 0.0, "facets": {"colour": ["red", "blue"]}}


class _Encoder:
    """Just what ``describe_items`` reads of an encoder with ``neighbours=0, probe=False``: label texts as unit
    vectors ("red" -> x, "blue" -> y); the images are :func:`_red_images`."""

    id = "stub-encoder"
    towers = SimpleNamespace(id="stub", image_dim=2)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([[1.0, 0.0] if "red" in t else [0.0, 1.0] for t in texts], np.float32)


def _red_images(encoder: Any, items: Sequence[CatalogueItem], settings: Settings,
                progress: Any = None) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Every item's photo is red (no file is read)."""
    vecs = np.tile(np.asarray([[1.0, 0.0]], np.float32), (len(items), 1))
    return np.zeros((len(items), 2), np.float32), vecs, {}


def _describe(store: Store, settings: Settings, progress: Any = None, **kwargs: Any) -> run.DescribeReport:
    return describe_items(store, settings, parse_vocabulary(VOCAB, "audit.toml"), neighbours=0, probe=False,
                          encoder=cast(TowerEncoder, _Encoder()), progress=progress, **kwargs)


def _texts(store: Store) -> dict[str, str]:
    with store.session() as s:
        ids = dict(s.execute(select(Item.id, Item.external_id)).all())
        return {ids[pk]: t for pk, t in generated_texts(s).items()}


PHOTOS = [ItemRecord(f"p{i}", f"Item {i}", media=[("image", f"/photos/{i}.jpg")]) for i in range(4)]


def test_describe_skips_items_whose_images_changed_or_that_were_deleted_during_the_run(
        store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "image_rows", _red_images)
    _import(store, PHOTOS)
    assert _describe(store, settings).described == 4 and set(_texts(store)) == {"p0", "p1", "p2", "p3"}

    def meanwhile(stage: str, done: int, total: int) -> None:
        if stage == "items" and done == 0:  # the catalogue was read, no chunk written yet
            _import(store, [ItemRecord("p0", "Item 0", media=[("image", "/photos/new.jpg")]),  # another photo
                            ItemRecord("p1", "Item 1 renamed", media=[("image", "/photos/1.jpg")]),  # same photo
                            ItemRecord("p3", "Item 3", media=[("image", "/photos/3.jpg"), ("image", "/x.jpg")])])
            with store.session() as s:
                set_flags(s, ["p2"], deleted=True)

    report = _describe(store, settings, progress=meanwhile)
    assert set(_texts(store)) == {"p1", "p2"}  # p0's and p3's were dropped by the upsert and not written back
    with store.session() as s:  # p2 keeps what it had (a deleted item is never shown), nothing new was written
        assert s.scalar(text("SELECT count(*) FROM item_descriptions")) == 2
    assert report.described == 1 and report.skipped == 3 and report.unconfident == 0
    assert report.errors == {"p0": run.IMAGES_CHANGED, "p3": run.IMAGES_CHANGED, "p2": run.DELETED}
    assert any("3 items skipped" in w for w in report.warnings)
    assert report.to_dict()["skipped"] == 3
    again = _describe(store, settings)  # a re-run describes the new photos
    assert again.skipped == 0 and again.described == 3 and set(_texts(store)) == {"p0", "p1", "p2", "p3"}


def test_describe_waits_for_an_image_change_in_flight(store: Store, settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: an upsert that changed the item's images and has not committed when describe writes: describe
    waits for it on the item's row, then sees the new images and skips the item (it wrote the old photo's
    description after the upsert had dropped it)."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time (the describe's write transaction holds the database)")
    monkeypatch.setattr(run, "image_rows", _red_images)
    _import(store, PHOTOS[:1])
    _describe(store, settings)
    assert set(_texts(store)) == {"p0"}
    reports: list[run.DescribeReport] = []
    errors: list[BaseException] = []

    def describe() -> None:
        try:
            reports.append(_describe(store, settings))
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    def waiting() -> bool:
        with store.reading() as c:
            return bool(c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar())

    with store.session() as s:  # the upsert, open while describe reads the old photo and comes to write
        upsert_items(s, [ItemRecord("p0", "Item 0", media=[("image", "/photos/new.jpg")])], TableCounts())
        s.flush()
        worker = threading.Thread(target=describe)
        worker.start()
        while worker.is_alive() and not waiting():
            time.sleep(0.005)
    worker.join()
    if errors:
        raise errors[0]
    assert _texts(store) == {} and reports[0].skipped == 1 and reports[0].described == 0


# -- vocabulary checks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("facet", "message"), [
    ({"fallback": "{}"}, "fallback '{}' has a brace, but it is written into the sentence as it is"),
    ({"fallback": "{colour} thing"}, "write the noun itself, e.g. fallback = \"item\""),
    ({"words": {"red": ""}}, "words 'red' = '' writes nothing for the label .* write omit = \\['red'\\]"),
    ({"words": {"red": "  "}}, "writes nothing for the label"),
    ({"words": {"red": "{}"}}, "words 'red' = '{}' has a brace"),
    ({"probe_features": ["stages"]}, "probe_features = \\['stages'\\] is read only by a probe, and the facet has "
                                     "none; add probe_weight \\(a number within 0 and 1\\) and a field, or remove"),
    ({"field": "category", "probe_features": ["pixels"]}, "add probe_weight \\(a number within 0 and 1\\), or remove "
                                                          "probe_features"),
    ({"field": "category", "probe_weight": 0, "probe_hidden": 64}, "probe_hidden = 64 is read only by a probe"),
])
def test_vocabulary_refuses_literal_braces_empty_words_and_probe_settings_without_a_probe(
        facet: dict[str, Any], message: str, tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"facets": {"colour": {"labels": ["red", "blue"], **facet}}}))
    with pytest.raises(ValidationFailed, match=f"vocabulary {path}: facet 'colour': .*{message}"):
        load_vocabulary(path)


def test_vocabulary_still_accepts_what_it_should() -> None:
    ok = {"labels": ["red", "blue"], "fallback": "thing", "words": {"red": "scarlet"}, "field": "category",
          "probe_weight": 0.5, "probe_features": ["pixels"], "probe_hidden": 16}
    v: Vocabulary = parse_vocabulary({"facets": {"colour": ok}}, "ok.toml")
    assert v.compose({"colour": "red"}) == "Scarlet." and v.facets[0].probe_features == ("pixels",)


# -- API docs ---------------------------------------------------------------------------------------------------------
def test_text_search_docs_name_every_source() -> None:
    from fastapi.routing import APIRoute

    from recsys.api.routes.search import router

    route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == "/v1/search/text"
                 and "GET" in r.methods)
    for source in ("lexical", "search", "id", "generated"):
        assert f"`{source}`" in str(route.description), source
