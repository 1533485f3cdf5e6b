"""The notebook review's defects, each over the notebooks' own cells run in this process (small stores, stand-ins
for the encoder and the built recommender): 01's category share of text that read the category, its map of a
modality with a few vectors, its overlap chart's bars and its catalogue lines; 02's what-if baseline; 03's headline
table said to be of every user."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.config import EncoderSettings, Settings
from recsys.encoders.base import l2_normalise
from recsys.encoders.text import ItemRecord, field_texts
from recsys.store.queries import events_frame, items_frame
from tests.e2e_fixture import ROOT
from tests.notebooks.stores import as_if_built, shop_store
from tests.notebooks.test_notebook_audit import DAY, HISTORY, SHOP_ITEMS, Result, Served
from tests.notebooks.test_setup_cells import code_cell, run_cells

CATALOGUE = ROOT / "notebooks" / "01_catalogue_and_embeddings.ipynb"
ONE_USER, EVALUATION = ROOT / "notebooks" / "02_one_user.ipynb", ROOT / "notebooks" / "03_evaluation.ipynb"
DIM = 256


@pytest.fixture
def plt(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """pyplot drawing off screen, each figure closed when shown as Jupyter's inline backend does (the next chart
    then starts a figure of its own); the figures shown are in ``plt.shown``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    shown: list[Any] = []

    def show(*_: Any, **__: Any) -> None:
        shown.append(pyplot.gcf())
        pyplot.close(pyplot.gcf())

    pyplot.close("all")
    monkeypatch.setattr(pyplot, "show", show)
    monkeypatch.setattr(pyplot, "shown", shown, raising=False)
    yield pyplot
    pyplot.close("all")


def drawn(plt: Any) -> list[Any]:
    """Every axes of the figures shown."""
    return [ax for fig in plt.shown for ax in fig.axes]


# -- 01: the category share of text vectors that read the category ----------------------------------------------

CATEGORIES = ("shoes", "hats", "bags")


def field_vector(text: str) -> np.ndarray:
    """A fixed random unit vector per field text: items share a direction only where they share a field's text."""
    v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIM)
    return v / np.linalg.norm(v)


def text_vectors(records: list[ItemRecord], fields: dict[str, float]) -> np.ndarray:
    """Each item's text as `recsys embed` makes it: the weighted, renormalised sum of its field vectors."""
    out = np.zeros((len(records), DIM), np.float32)
    for r, it in enumerate(records):
        for _, text, weight in field_texts(it, fields):
            out[r] += weight * field_vector(text)
    return l2_normalise(out)


@pytest.fixture
def catalogue(tmp_path: Path, plt: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The namespace 01's neighbour cells find: 60 items of 3 categories, titles that say nothing of it, a genre
    list that starts with it (as MovieLens' does); text vectors as served from every configured field, image
    vectors that group by category (40 items have one). ``encoded`` records what the encoder was asked again."""
    from recsys.encoders.catalog import read_items

    rng = np.random.default_rng(0)
    rows = [{"item_id": f"item-{n:02d}", "title": f"product {n}", "category": CATEGORIES[n % 3],
             "attributes": {"genres": [CATEGORIES[n % 3], CATEGORIES[(n + 1 + n // 3 % 2) % 3]]}} for n in range(60)]
    store = shop_store(tmp_path / "home", rows, [])
    settings = Settings(home=tmp_path / "home", database_url=None)
    with store.session() as s:
        items = items_frame(s).set_index("item_id")
    ids = list(items.index)
    records = {r.item_id: r for r in read_items(store)}
    text = text_vectors([records[i] for i in ids], settings.encoder.text_fields)
    centres = {c: field_vector(f"picture of {c}") for c in CATEGORIES}
    image = l2_normalise(np.stack([centres[c] for c in items["category"]])
                         + 0.3 * rng.standard_normal((60, DIM)) / np.sqrt(DIM)).astype(np.float32)
    has_image = np.arange(60) < 40
    image[~has_image] = 0
    fused = l2_normalise(text + image)
    encoded: list[dict[str, Any]] = []

    def encode_items(encoder: Any, its: list[ItemRecord], settings: Settings, *_: Any, **__: Any) -> tuple:
        encoded.append({"encoder": encoder, "fields": dict(settings.encoder.text_fields),
                        "media": [it.media for it in its], "items": [it.item_id for it in its]})
        n = len(its)
        return (text_vectors(its, settings.encoder.text_fields), np.zeros((n, DIM), np.float32), np.zeros(n, bool),
                {})

    monkeypatch.setattr("recsys.encoders.embed.encode_items", encode_items)
    ns = {"np": np, "pd": pd, "plt": plt, "items": items, "ids": ids, "settings": settings, "store": store,
          "rec": SimpleNamespace(encoder="the served encoder"), "rng": rng, "encoded": encoded,
          "vecs": {"fused": (fused, np.ones(60, bool)), "text": (text, np.ones(60, bool)), "image": (image, has_image)}}
    try:
        yield ns
    finally:
        store.dispose()


def test_text_that_read_the_category_is_compared_with_text_that_did_not(
        catalogue: dict[str, Any], plt: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # 01 drew "fused 1.00, text 1.00, image 0.99" as a proxy for relevance: the text vector holds the category
    # field itself (weight 1.0, as much as the title), so its neighbours share the category by construction
    ns = run_cells(CATALOGUE, "def neighbours(", "def naming_the_category(", ns=catalogue)
    assert ns["purity"]["text"] > 0.95 and ns["purity"]["image"] > 0.95
    assert ns["left_out"] == ["category", "attributes.genres"]  # the genre list names the category too
    [asked] = catalogue["encoded"]
    assert asked["encoder"] == "the served encoder" and asked["items"] == ns["ids"]
    assert "category" not in asked["fields"] and "attributes.genres" not in asked["fields"]
    assert asked["fields"]["title"] == 1.0 and all(m == () for m in asked["media"])  # text only, weights as set
    without = "without category + genres"
    text_share = ns["compared"][f"text\n{without}"]
    assert text_share < 0.6  # titles that say nothing of the category: near the 1 in 3 of chance
    assert ns["compared"][f"fused\n{without}"] > text_share  # the image, which groups by category, added
    assert ns["circular"] == {"fused", "text"}
    out = capsys.readouterr().out
    assert "same category among the nearest, vectors as served: fused 1.00" in out
    assert "left out of the text, as it reads the category: category, attributes.genres" in out
    assert f"same category among the nearest, {without}: text {text_share:.2f}" in out
    [ax] = drawn(plt)
    assert "grey: text that read the category field, so near 1 by construction" in ax.get_title()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["fused\n(60 items)", "text\n(60 items)", "image\n(40 items)",
                      f"text\n{without}\n(60 items)", f"fused\n{without}\n(60 items)"]
    grey = [bar.get_facecolor()[:3] == (0.7, 0.7, 0.7) for bar in ax.patches]
    assert grey == [True, True, False, False, False]


def test_text_without_the_category_field_is_compared_as_served(
        catalogue: dict[str, Any], plt: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fields = {"title": 1.0, "category": 0.0, "description": 0.5}  # weight 0: category is not read
    ns = {**catalogue, "settings": Settings(home=tmp_path / "home", database_url=None,
                                            encoder=EncoderSettings(text_fields=fields))}
    ns = run_cells(CATALOGUE, "def neighbours(", "def naming_the_category(", ns=ns)
    assert ns["left_out"] == [] and catalogue["encoded"] == [] and ns["circular"] == set()
    assert "the text vectors read no category field (title, category, description)" in capsys.readouterr().out
    [ax] = drawn(plt)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fused\n(60 items)", "text\n(60 items)",
                                                          "image\n(40 items)"]


# -- 01: the overlap chart and the pairs' correlations ------------------------------------------------------------

def test_the_overlap_chart_draws_each_share_in_its_own_bar(plt: Any) -> None:
    # plt.hist(bins=np.linspace(0, 1, 11)) drew every 0.3 in the 0.2 bar (an edge at 0.30000000000000004), every 0.6
    # in the 0.5 bar and every 0.7 in the 0.6 bar: an empty 0.3 bar on the demo, where 221 items share 3 of 10
    n, k = 60, 10
    shifts = np.array([s for s in range(k + 1) for _ in range(3)] + [7, 7, 7, 4, 4, 4, 3, 3] * 3 + [9, 9, 9])[:n]
    text_nn = np.array([[(i + 1 + j) % n for j in range(k)] for i in range(n)])
    image_nn = np.array([[(i + 1 + s + j) % n for j in range(k)] for i, s in enumerate(shifts)])
    real = np.ones((n, k), bool)
    rng = np.random.default_rng(0)
    cats = np.array(CATEGORIES)[np.arange(n) % 3]
    vecs = {m: (l2_normalise(rng.standard_normal((n, 8))).astype(np.float32), np.ones(n, bool))
            for m in ("text", "image")}
    ns = {"np": np, "pd": pd, "plt": plt, "K": k, "nn": {"text": (text_nn, real), "image": (image_nn, real)},
          "vecs": vecs, "ids": [f"i-{i}" for i in range(n)], "rng": rng, "cat_of": cats}
    exec(compile(code_cell(CATALOGUE, "overlap of the text and image"), "overlap", "exec"), ns)
    overlap_ax = next(ax for ax in drawn(plt) if ax.get_title().startswith("overlap"))
    heights = {round((bar.get_x() + bar.get_width() / 2) * k): bar.get_height() for bar in overlap_ax.patches}
    expected = np.bincount(k - shifts, minlength=k + 1)
    assert heights == {s: expected[s] for s in range(k + 1)}
    assert f"(mean {((k - shifts) / k).mean():.2f})" in overlap_ax.get_title()
    # the correlation of random pairs is said within a category and across categories too
    pairs_ax = next(ax for ax in drawn(plt) if ax.get_title().startswith("random item pairs"))
    assert " every pair, " in pairs_ax.get_title() and "within a category" in pairs_ax.get_title()
    assert "across categories" in pairs_ax.get_title()


# -- 01: the map of a modality with a few vectors, and the catalogue lines ---------------------------------------

def test_a_map_with_too_few_vectors_is_skipped_and_the_others_are_drawn(plt: Any,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # a store with 4 pictures stopped 01 at its map with sklearn's "perplexity (5) must be less than n_samples (4)"
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    n = 40
    ids = [f"i-{i}" for i in range(n)]
    items = pd.DataFrame({"category": np.array(CATEGORIES)[np.arange(n) % 3]}, index=pd.Index(ids, name="item_id"))
    vecs = {m: (l2_normalise(rng.standard_normal((n, 16))).astype(np.float32), np.arange(n) < have)
            for m, have in (("fused", n), ("text", n), ("image", 4))}
    ns = {"np": np, "pd": pd, "plt": plt, "items": items, "ids": ids, "vecs": vecs, "MAP_SAMPLE": 3000}
    run_cells(CATALOGUE, "TSNE(", ns=ns)
    assert "image vectors: 4 of the 40 sampled items have one, too few for a map" in capsys.readouterr().out
    assert [ax.get_title() for ax in drawn(plt)] == ["fused vectors (40 items)", "text vectors (40 items)"]
    plt.shown.clear()
    ns["vecs"] = {"image": vecs["image"]}  # nothing to map: said, and no empty figure
    run_cells(CATALOGUE, "TSNE(", ns=ns)
    assert drawn(plt) == [] and "too few for a map" in capsys.readouterr().out


@pytest.mark.parametrize(("in_stock", "said"), [
    ([True, True], "price: none given; in stock: every item (what is recorded when the data gives no stock)"),
    ([True, False], "price: none given; in stock 50%")], ids=["no-stock-data", "stock-given"])
def test_a_store_without_stock_data_is_not_said_to_be_all_in_stock(
        in_stock: list[bool], said: str, plt: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # on MovieLens (no stock data: every item stored as in stock) 01 printed "in stock 100%" as a fact
    items = pd.DataFrame({"category": ["a", "b"], "price": [None, None], "in_stock": in_stock})
    run_cells(CATALOGUE, "items per category (top 20)", ns={"items": items, "plt": plt})
    assert said in capsys.readouterr().out


@pytest.mark.parametrize("path", [CATALOGUE, ONE_USER, EVALUATION], ids=lambda p: p.stem)
def test_pictures_that_cannot_be_read_are_not_counted_as_pictures(
        path: Path, tmp_path: Path, plt: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the header counted every item with an image row, whatever its status; `recsys stats` counts the usable ones
    from sqlalchemy import update

    from recsys.store.tables import ItemMedia

    rows = [{"item_id": f"sku-{n}", "title": f"product {n}", "category": "shoes", "image": f"{n}.png"}
            for n in range(3)]
    store = shop_store(tmp_path / "home", rows + [{"item_id": "sku-9", "title": "no picture"}], [])
    try:
        with store.session() as s:
            s.execute(update(ItemMedia).where(ItemMedia.uri.like("%2.png")).values(status="error"))
    finally:
        store.dispose()
    as_if_built(monkeypatch)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    ns = run_cells(path, "parameters", "rec = Recommender(")
    ns["store"].dispose()
    assert "4 items, 2 with an image (1 with an image that cannot be read), 0 users, 0 events" in \
        capsys.readouterr().out


# -- 02: the what-if's "before" ------------------------------------------------------------------------------------

class Session(Served):
    """recommend() ranks the stored history, recommend_for_events() a session's: two lists for the same history,
    as on the demo (the session's events are never counted in the statistics). A disliked item leaves the list."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: list[list[dict[str, Any]]] = []

    def recommend_for_events(self, events: list[dict[str, Any]], k: int = 20, **_: Any) -> list[Result]:
        self.asked.append(list(events))
        disliked = {e["item_id"] for e in events if e["type"] == "dislike"}
        ids = [i for i in ("bag-0", "hat-4", "shoe-3", "hat-5") if i not in disliked] + ["bag-1"] * bool(disliked)
        return [Result(i) for i in ids][:k]


def test_the_what_if_compares_lists_of_the_same_path(tmp_path: Path, plt: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # "before" was rec.recommend (the stored history), "after" rec.recommend_for_events (the history as a session):
    # a difference the feedback did not make was counted in "kept N of 12" and the categories chart
    events = [{"user_id": "user-0001", "item_id": i, "type": t, "timestamp": DAY.format(n + 1)}
              for n, (t, i) in enumerate(HISTORY)]
    store = shop_store(tmp_path / "home", SHOP_ITEMS, events, users=["user-0001"], hidden=["hat-0", "hat-1", "hat-2"])
    try:
        with store.session() as s:
            items, stored = items_frame(s).set_index("item_id"), events_frame(s)
        stored_list = [Result(i) for i in ("shoe-3", "bag-1", "hat-5", "hat-3")]
        rec = Session(store, {"user-0001": stored_list}, ["bag-0"])
        shown: list[tuple[list[str], str | None]] = []
        ns = {"np": np, "pd": pd, "plt": plt, "K": 4, "store": store, "items": items, "events": stored,
              "events_frame": events_frame, "rec": rec, "USER": "user-0001",
              "gallery": lambda ids, captions=None, title=None, **_: shown.append((list(ids), title))}
        run_cells(ONE_USER, "user = USER or", "recs = rec.recommend(user", "fresh_cats = [", ns=ns)
    finally:
        store.dispose()
    base, with_feedback = rec.asked
    assert [e["type"] for e in base] == ["view", "purchase", "view"]  # the history alone: no feedback
    assert with_feedback[:3] == base and [e["type"] for e in with_feedback[3:]] == ["like", "like", "dislike"]
    assert ns["dislike"] == "bag-0"  # the top of "before", not of the stored-history list
    out = capsys.readouterr().out
    assert "kept 3 of 4; disliked item still there: False" in out  # bag-0 went, bag-1 came: the feedback's doing
    assert (["bag-0", "hat-4", "shoe-3", "hat-5"], "before: the history as events, no feedback") in shown


# -- 03: the headline table's users --------------------------------------------------------------------------------

def test_the_headline_table_says_it_is_over_every_user(plt: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # 03 called `rec.jobs.evaluate(k, part=None)` "recsys evaluate --json" (whose default is the test part), and no
    # chart said which users: validation users, where choices are tuned, were pooled in unsaid
    asked: list[dict[str, Any]] = []
    scores = {m: 0.1 for m in ("recall", "ndcg", "hit_rate", "mrr", "coverage")}
    report = {"k": 10, "protocol": "last_day", "users": 256, "targets": 313, "metrics": scores,
              "baselines": {"popular": scores}, "slices": {"cold_items": {
                  "users": 2, "definition": "targets nobody had", "ndcg": 0.1, "recall": 0.2,
                  "baselines": {"popular": {"ndcg": 0.05, "recall": 0.1}}}}}

    def evaluate(**kw: Any) -> dict[str, Any]:
        asked.append(kw)
        return report

    ns = {"np": np, "pd": pd, "plt": plt, "K": 10, "rec": SimpleNamespace(jobs=SimpleNamespace(evaluate=evaluate))}
    run_cells(EVALUATION, "rec.jobs.evaluate(", "accuracy at {K}", "by slice", ns=ns)
    assert asked == [{"k": 10, "part": None}]
    titles = [ax.get_title() for ax in drawn(plt)]
    assert titles == ["accuracy at 10 (last_day; 256 users: every user, --part all)",
                      "catalogue coverage of the top-10 lists\n(every user, --part all)",
                      "NDCG@10 by slice (every user, --part all)"]
    book = json.loads(EVALUATION.read_text(encoding="utf-8"))
    at = next(n for n, c in enumerate(book["cells"])
              if c["cell_type"] == "code" and "rec.jobs.evaluate(" in "".join(c["source"]))
    said = "".join(book["cells"][at - 1]["source"])
    assert "`recsys evaluate --part all --json`" in said and "the test part alone" in said
    assert "is `recsys evaluate --json`" not in said
