"""Hybrid text search: a rare word the vectors miss is found, filters and removals hold, k is filled, ids go first.

A tiny catalogue with a known answer: dresses, tops and scarves in three vector clusters, and a fake text encoder
that maps a query to the dress or top cluster, or to a fourth direction the two "mooncake" items (and three items
sharing a product code) point away from, so vector search alone ranks them last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.errors import ValidationFailed
from recsys.index import ItemFilter, build_from_catalog, hybrid
from recsys.index.hybrid import hybrid_search, rrf
from recsys.service import Recommender
from recsys.store import Store
from recsys.store.importers.records import ItemRecord
from recsys.store.importers.report import TableCounts
from recsys.store.importers.writer import upsert_items
from recsys.store.items import set_flags
from recsys.store.tables import Item
from tests.index.fixtures import FakeVectors, store_vectors

D = 8
AXES = np.eye(D, dtype=np.float32)  # 0: dresses, 1: tops, 2: anything else
RARE = {"d07", "t05"}
CODED = {"d03", "d21", "t17"}


def _vector(item_id: str) -> np.ndarray:
    kind = "dtx".index(item_id[0])
    rng = np.random.default_rng(int(item_id[1:]) + 100 * kind)
    v = AXES[(0, 1, 3)[kind]] + 0.2 * rng.standard_normal(D).astype(np.float32)
    if item_id in RARE | CODED:
        v -= AXES[2]  # away from the direction an unknown word is encoded to
    return v / np.linalg.norm(v)


def _vectors(settings: Settings, store: Store) -> FakeVectors:
    return store_vectors(store, _vector, live_only=False)


class FakeTextEncoder:
    id = "fake-enc"  # the encoder the index was built with (FakeVectors.encoder_id)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for t in texts:
            axis = 0 if "dress" in t.lower() else 1 if "top" in t.lower() else 2
            out.append(AXES[axis])
        return np.stack(out)


@pytest.fixture
def rec(store: Store, tmp_path: Path) -> Recommender:
    records = [ItemRecord(f"d{j:02d}", "Mooncake dress" if f"d{j:02d}" in RARE else f"Plain dress {j}",
                          "A dress.", "dress", price=float(j)) for j in range(30)]
    records += [ItemRecord(f"t{j:02d}", "Mooncake top" if f"t{j:02d}" in RARE else f"Basic top {j}",
                           "A top.", "top", price=float(j)) for j in range(30)]
    # more items than a fused list reads deep (100), so an item the vectors rank last is in the keyword list only
    records += [ItemRecord(f"x{j:02d}", f"Scarf {j}", "A scarf.", "scarf", price=100.0) for j in range(80)]
    for r in records:
        if r.external_id in CODED:  # three variants of one product share its code
            r.attributes = {"product_code": "P-0777"}
    return _recommender(store, tmp_path, records)


def _recommender(store: Store, tmp_path: Path, records: list[ItemRecord]) -> Recommender:
    with store.session() as s:
        upsert_items(s, records, TableCounts())
    settings = Settings(home=tmp_path / "home", database_url=store.url)
    build_from_catalog(store, settings, vectors=_vectors)
    r = Recommender(settings, store)
    r.use_encoder(FakeTextEncoder())  # type: ignore[arg-type]
    return r


def _ids(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [h.item_id for h in hits]


@pytest.fixture
def leopards(store: Store, tmp_path: Path) -> Recommender:
    """More items matching "leopard" better (in the title) than the list reads deep (2 * 100), all tights, and one
    dress that names it in its description only: the keyword match of a filter on dresses is the 251st."""
    records = [ItemRecord(f"t{j:03d}", f"Leopard tights {j}", "Leopard print.", "tights") for j in range(250)]
    records += [ItemRecord(f"d{j:02d}", f"Plain dress {j}", "A dress.", "dress") for j in range(5)]
    records += [ItemRecord("d05", "Odessa dress", "Long dress with a small leopard motif.", "dress")]
    return _recommender(store, tmp_path, records)


def test_a_filter_keeps_its_one_keyword_match_behind_hundreds_outside(leopards: Recommender,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dresses = ItemFilter.of(categories=["dress"])
    for mode in ("lexical", "hybrid"):
        hits = leopards.search_text("leopard", 20, mode=mode, filter=dresses)
        assert hits[0].item_id == "d05" and "lexical" in hits[0].sources and len(hits) == 6
    tights = [f"t{j:03d}" for j in range(250)]
    assert _ids(leopards.search_text("leopard", 3, mode="lexical", exclude=tights))[0] == "d05"
    # read deeper only while too few pass: unfiltered, one read as deep as before; filtered, until the matches end
    limits: list[int] = []

    def lexical(query: str, n: int) -> list[tuple[str, float]]:
        limits.append(n)
        return leopards._lexical.search(query, n)

    def search(filter: ItemFilter | None) -> list[str]:
        limits.clear()
        return _ids(hybrid_search(leopards.index, "leopard", 20, mode="lexical", filter=filter, lexical=lexical,
                                  vector=lambda n: []))

    assert search(None) == tights[:20] and limits == [200]
    assert search(dresses) == ["d05"] and limits == [200, 400]
    monkeypatch.setattr(hybrid, "LEXICAL_FETCH_MAX", 250)  # the bound holds: a 251st match is not read
    assert search(dresses) == [] and limits == [200, 250]


def test_rare_word_found_by_hybrid_missed_by_vectors(rec: Recommender) -> None:
    assert not RARE & set(_ids(rec.search_text("mooncake", 20, mode="vector")))
    hits = rec.search_text("mooncake", 20)  # the default mode is hybrid: keyword and vector lists interleave
    assert set(_ids(hits)[:3]) >= RARE and hits[0].item_id in RARE and hits[0].sources == ["lexical"]
    keyed = rec.search_text("mooncake", 20, lexical_weight=0.6)  # more weight: the keyword matches first
    assert set(_ids(keyed)[:2]) == RARE
    assert len(hits) == 20 and len(set(_ids(hits))) == 20
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert set(_ids(rec.search_text("mooncake", 2, mode="lexical"))) == RARE
    # both words: the item with both first, then the vectors' dresses, with the other rare-word match among them
    broad = _ids(rec.search_text("mooncake dress", 10))
    assert broad[0] == "d07" and "t05" in broad and all(i.startswith("d") for i in broad if i != "t05")
    assert "d07" not in _ids(rec.search_text("mooncake dress", 10, mode="vector"))


def test_filters_exclusions_and_removed_items_hold(rec: Recommender) -> None:
    dresses = ItemFilter.of(categories=["dress"])
    hits = rec.search_text("mooncake", 5, filter=dresses)
    assert _ids(hits)[0] == "d07" and len(hits) == 5 and all(i.startswith("d") for i in _ids(hits))
    cheap = rec.search_text("mooncake", 30, filter=ItemFilter.of(price_max=6.0))
    assert "d07" not in _ids(cheap) and _ids(cheap)[0] == "t05" and len(cheap) == 14  # 7 dresses + 7 tops <= 6
    assert "t05" not in _ids(rec.search_text("mooncake", 20, exclude=["t05"]))
    with rec.store.session() as s:
        set_flags(s, ["d07"], hidden=True)
    for mode in ("hybrid", "lexical"):
        hits = rec.search_text("mooncake", 20, mode=mode)
        assert "d07" not in _ids(hits) and _ids(hits)[0] == "t05" and len(hits) == 20


def test_k_is_filled_and_lexical_mode_fills_from_vectors(rec: Recommender) -> None:
    hits = rec.search_text("mooncake", 10, mode="lexical")
    assert len(hits) == 10 and set(_ids(hits)[:2]) == RARE
    assert all(h.sources == ["search"] and h.score == 0 for h in hits[2:])
    assert len(rec.search_text("zeppelin", 60)) == 60  # no keyword match at all: the vectors fill k
    assert len(rec.search_text("zeppelin", 60, mode="lexical")) == 60


def test_weight_zero_is_the_vector_order_and_ids_go_first(rec: Recommender) -> None:
    vec = _ids(rec.search_text("mooncake", 20, mode="vector"))
    assert _ids(rec.search_text("mooncake", 20, lexical_weight=0.0)) == vec
    hits = rec.search_text("t12", 5)
    assert hits[0].item_id == "t12" and hits[0].sources == ["id"] and len(hits) == 5
    assert "t12" not in _ids(hits[1:])
    assert rec.search_text("t12", 5, mode="vector")[0].sources == ["search"]  # vector mode is as before
    # one tower asked for by name stays that tower's vector search unless a mode is given
    assert _ids(rec.search_text("mooncake", 20, modality="image")) == \
        _ids(rec.search_text("mooncake", 20, modality="image", mode="vector"))
    assert set(_ids(rec.search_text("mooncake", 3, modality="image", mode="hybrid"))) >= RARE
    assert "t12" not in _ids(rec.search_text("t12", 5, filter=ItemFilter.of(categories=["dress"])))


def test_a_code_query_puts_its_items_first(rec: Recommender) -> None:
    assert set(_ids(rec.search_text("P-0777", 3))) == CODED
    assert set(_ids(rec.search_text("P-0777", 3, mode="vector"))) != CODED
    hits = rec.search_text("P-0777", 10, filter=ItemFilter.of(categories=["dress"]))
    assert set(_ids(hits)[:2]) == {"d03", "d21"} and len(hits) == 10


def test_bad_mode_and_weight_are_refused(rec: Recommender) -> None:
    with pytest.raises(ValidationFailed, match="mode"):
        rec.search_text("dress", 5, mode="fuzzy")
    with pytest.raises(ValidationFailed, match="lexical_weight"):
        rec.search_text("dress", 5, lexical_weight=1.5)


def test_rrf_known_answer() -> None:
    fused = rrf({"a": ["x", "y", "z"], "b": ["z", "w"]}, {"a": 0.5, "b": 0.5}, c=1)
    scores = {h.item_id: round(h.score, 4) for h in fused}
    assert scores == {"x": 0.25, "y": round(0.5 / 3, 4), "z": round(0.5 / 4 + 0.25, 4), "w": round(0.5 / 3, 4)}
    assert [h.item_id for h in fused] == ["z", "x", "y", "w"]  # ties keep the order first met
    assert fused[0].sources == ["a", "b"]


def test_cli_search_text_mode(rec: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    import recsys.cli.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_recommender", lambda: rec)

    def run(*args: str) -> list[dict]:  # type: ignore[type-arg]
        res = CliRunner().invoke(pipeline.search_app, ["text", "mooncake", "--k", "3", "--json", *args])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    assert {r["item_id"] for r in run()} >= RARE and "lexical" in run()[0]["sources"]
    assert not RARE & {r["item_id"] for r in run("--mode", "vector")}
    assert {r["item_id"] for r in run("--mode", "lexical")[:2]} == RARE
    assert not RARE & {r["item_id"] for r in run("--lexical-weight", "0")}
    res = CliRunner().invoke(pipeline.search_app, ["text", "mooncake", "--mode", "fuzzy"])
    assert res.exit_code != 0


def test_a_match_only_through_a_generated_description_says_so(rec: Recommender, store: Store) -> None:
    from recsys.store.descriptions import GeneratedDescription, replace_descriptions

    with store.session() as s:
        pks = dict(s.execute(select(Item.external_id, Item.id)).all())
        replace_descriptions(s, [GeneratedDescription(pks[i], "Leopard print.", [], "zero-shot:test", "generic")
                                 for i in ("x03", "d07")])
    hits = {h.item_id: h.sources for h in rec.search_text("leopard mooncake", 20, mode="lexical")}
    assert hits["x03"][0] == "lexical" and hits["x03"][-1] == "generated"  # "Scarf 3 / A scarf.": the image's words
    assert "lexical" in hits["d07"] and "generated" not in hits["d07"]  # "Mooncake dress": its own title has one
    assert "generated" not in rec.search_text("mooncake", 20, mode="lexical")[0].sources
