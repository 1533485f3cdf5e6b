"""``recsys items describe`` on a tiny fitted catalogue with a known answer (the colour is in the photo): the words
are right, re-runs replace, the merchant's text is never written, a broken image is a per-item error, and the
description is searchable, shown as generated in the explorer and used for the text of items with poor text."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from recsys.config import Settings
from recsys.describe import describe_items, load_vocabulary, run
from recsys.describe.vocabulary import Vocabulary
from recsys.encoders.catalog import read_items
from recsys.encoders.fit import fit_encoder
from recsys.encoders.training import FitParams
from recsys.errors import UnknownItem, ValidationFailed
from recsys.store import Item, Store
from recsys.store.descriptions import generated_texts
from recsys.store.lexical import lexical_search
from recsys.store.tables import ItemDescription
from tests.encoders.fixtures import COLOURS, add_item, colour_catalogue, garment

VOCAB = """
name = "test"
sentence = "{colour} {shape}"
min_confidence = 0.0

[facets.colour]
labels = ["red", "blue", "green", "black", "yellow", "white"]

[facets.shape]
labels = ["box", "dress"]
fallback = "thing"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Settings, Path]:
    """A fitted tiny catalogue (fitting is the slow part), plus items with poor text, a broken image and none."""
    tmp = tmp_path_factory.mktemp("describe")
    settings = Settings(home=tmp / "home", database_url=f"sqlite:///{tmp / 't.db'}")
    settings.encoder.batch_size, settings.encoder.num_workers, settings.encoder.device = 8, 0, "cpu"
    settings.encoder.text_fields = {"title": 1.0, "category": 1.0, "attributes.colour": 1.0}
    settings.encoder.generated_text_below = 15  # "red box 0" + "A red box." (19 characters) is enough text
    store = Store(settings.db_url)
    store.upgrade()
    colour_catalogue(store, tmp / "img", per_colour=4)
    fit_encoder(store, settings, params=FitParams(epochs=30, batch_size=64, val_pairs=4, lr=5e-3))
    add_item(store, "poor", "Art. 7", media=[("image", garment(tmp / "poor.jpg", COLOURS["red"]))])
    broken = tmp / "broken.jpg"
    broken.write_text("not an image at all\n" * 20)
    add_item(store, "broken", "Broken photo dress", description="A dress.", media=[("image", broken)])
    add_item(store, "noimg", "Text only")
    vocab = tmp / "vocab.toml"
    vocab.write_text(VOCAB)
    return store, settings, vocab


def _texts(store: Store) -> dict[str, str]:
    with store.session() as s:
        ids = dict(s.execute(select(Item.id, Item.external_id)).all())
        return {ids[pk]: t for pk, t in generated_texts(s).items()}


def test_colours_are_written_and_failures_are_per_item(env: tuple[Store, Settings, Path]) -> None:
    store, settings, vocab = env
    report = describe_items(store, settings, load_vocabulary(vocab))
    assert report.items == 27 and report.described == 25 and report.failed == 2
    assert set(report.errors) == {"broken", "noimg"} and report.errors["noimg"] == "no image"
    assert "not an image" in report.errors["broken"]
    texts = _texts(store)
    assert set(texts) == {f"{c}-{i}" for c in COLOURS for i in range(4)} | {"poor"}
    assert all(t[0].isupper() and t.endswith(".") for t in texts.values())
    right = sum(texts[f"{c}-{i}"].lower().startswith(c) for c in COLOURS for i in range(4))
    assert right / 24 >= 0.6  # the same bar as the fitted encoder's colour retrieval
    assert all("red" in texts[f"red-{i}"].lower() for i in range(4)) and "red" in texts["poor"].lower()


def test_rerun_replaces_and_never_writes_the_merchant_text(env: tuple[Store, Settings, Path]) -> None:
    store, settings, vocab = env
    with store.session() as s:
        before = s.execute(select(Item.external_id, Item.title, Item.description, Item.content_hash)).all()
    describe_items(store, settings, load_vocabulary(vocab))
    first = _texts(store)
    reworded = vocab.with_name("reworded.toml")
    reworded.write_text(VOCAB.replace('labels = ["box", "dress"]', 'labels = ["box", "dress"]\nphrase = "{} shape"'))
    describe_items(store, settings, load_vocabulary(reworded))
    second = _texts(store)
    assert set(second) == set(first)
    assert all(t.endswith(" shape.") for t in second.values())
    with store.session() as s:
        assert len(s.scalars(select(ItemDescription)).all()) == len(first)  # replaced, not added
        assert s.execute(select(Item.external_id, Item.title, Item.description, Item.content_hash)).all() == before
        row = s.scalars(select(ItemDescription)).first()
        assert row is not None and row.source.startswith("zero-shot:") and row.vocabulary == "test"
        assert {f["facet"] for f in row.facets} == {"colour", "shape"}
        assert all(0.0 <= f["score"] <= 1.0 for f in row.facets)


def test_only_missing_limit_and_confidence(env: tuple[Store, Settings, Path]) -> None:
    store, settings, vocab = env
    v = load_vocabulary(vocab)
    report = describe_items(store, settings, v, only_missing=True)  # "Art. 7" and "Text only" are poor
    assert report.items == 2 and report.described == 1 and set(report.errors) == {"noimg"}
    assert describe_items(store, settings, v, limit=3).items == 3
    assert "red-0" in _texts(store)
    sure = describe_items(store, settings, v, min_confidence=1.0, item_ids=["red-0"])
    assert sure.items == 1 and sure.described == 0 and sure.unconfident == 1  # nothing is that sure
    assert sure.withdrawn == 1 and "red-0" not in _texts(store)  # the earlier text claimed what is not sure now
    with pytest.raises(UnknownItem, match="unknown item id\\(s\\) 'nope'"):  # not "0 of 0 items described"
        describe_items(store, settings, v, item_ids=["red-0", "nope"])


def test_neighbour_vote_reads_only_other_items_labels(env: tuple[Store, Settings, Path]) -> None:
    store, settings, vocab = env
    voted = vocab.with_name("voted.toml")
    voted.write_text(VOCAB.replace("min_confidence = 0.0", "min_confidence = 0.0\nneighbour_weight = 1.0")
                     .replace("[facets.colour]", '[facets.colour]\nfield = "attributes.colour"'))
    v = load_vocabulary(voted)
    ids = [f"{c}-{i}" for c in COLOURS for i in range(4)]
    describe_items(store, settings, v, neighbours=3, item_ids=ids)
    texts = _texts(store)
    assert sum(texts[i].lower().startswith(i.split("-")[0]) for i in ids) / 24 >= 0.6  # by the other 3 of its colour
    with store.session() as s:
        rows = s.scalars(select(ItemDescription).join(Item).where(Item.external_id.in_(ids))).all()
        assert len(rows) == 24 and all(r.source.startswith("zero-shot+neighbours:") for r in rows)
    reds = [f"red-{i}" for i in range(4)]
    describe_items(store, settings, v, neighbours=3, item_ids=ids, label_exclude=reds)
    texts = _texts(store)
    assert not any(texts[i].lower().startswith("red") for i in ids)  # no red item may vote: nobody is called red
    describe_items(store, settings, v, neighbours=0, item_ids=["red-0"])
    with store.session() as s:
        row = s.scalars(select(ItemDescription).join(Item).where(Item.external_id == "red-0")).one()
        assert row.source.startswith("zero-shot:")  # 0: the zero-shot tagger alone


def test_description_is_searchable(env: tuple[Store, Settings, Path]) -> None:
    store, settings, vocab = env
    describe_items(store, settings, load_vocabulary(vocab), item_ids=["poor"])
    with store.reading() as c:
        found = [i for i, _ in lexical_search(c, "red", 50)]
    assert "poor" in found  # its own text ("Art. 7") has no colour


def test_poor_text_items_embed_their_generated_description(env: tuple[Store, Settings, Path]) -> None:
    store, settings, vocab = env
    describe_items(store, settings, load_vocabulary(vocab))
    records = {r.item_id: r for r in read_items(store, generated_below=settings.encoder.generated_text_below)}
    assert "red" in records["poor"].generated_description.lower()
    assert records["red-0"].generated_description == ""  # its own text is enough
    assert all(r.generated_description == "" for r in read_items(store))  # off unless asked (encoder fit)
    from recsys.encoders.text import field_texts

    names = [n for n, _, _ in field_texts(records["poor"], settings.encoder.text_fields)]
    assert names == ["title", "generated_description"]
    assert [n for n, _, _ in field_texts(records["poor"], {"title": 1.0, "generated_description": 0.0})] == ["title"]
    from recsys.encoders.embed import embed_catalog
    from recsys.encoders.encoder import get_encoder
    from recsys.encoders.vectors import load_item_vectors

    embed_catalog(store, settings)
    vecs = load_item_vectors(settings, store)
    enc = get_encoder(settings)
    title, gen = enc.encode_texts(["Art. 7", records["poor"].generated_description])
    text = vecs.text[list(vecs.item_ids).index("poor")]
    assert float(text @ gen) > float(title @ gen) + 0.05  # the description pulled the item's text vector to itself


def test_explorer_shows_it_as_generated(env: tuple[Store, Settings, Path], tmp_path: Path) -> None:
    from recsys.api import create_app
    from recsys.service import Recommender

    store, settings, vocab = env
    describe_items(store, settings, load_vocabulary(vocab), item_ids=["poor"])
    s = settings.model_copy(deep=True)
    s.api = s.api.model_copy(update={"auth": False, "rate_limit_per_minute": 0})
    with TestClient(create_app(s, Recommender(s, store))) as client:
        page = client.get("/items/poor")
        assert page.status_code == 200, page.text[:500]
        assert 'id="generated-description"' in page.text and "generated from the image" in page.text
        assert _texts(store)["poor"] in page.text
        api = client.get("/v1/items/poor").json()
        assert api["generated_description"]["generated"] is True and api["description"] == ""
        assert 'id="generated-description"' not in client.get("/items/noimg").text


def test_vocabularies_ship_and_bad_ones_are_refused(tmp_path: Path) -> None:
    for name in ("generic", "hm"):
        v = load_vocabulary(name)
        assert isinstance(v, Vocabulary) and v.name == name and len(v.facets) >= 3
    hm = load_vocabulary("hm")
    assert hm.compose({"colour": "red", "pattern": "stripe", "garment": "dress", "material": "jersey"}) \
        == "Red striped dress in jersey."
    assert hm.compose({"colour": None, "pattern": "solid", "garment": None, "material": None}) == ""
    assert hm.compose({"colour": "black", "pattern": "solid", "garment": None, "material": None}) == "Black garment."
    bad = tmp_path / "bad.toml"
    for text in ('sentence = "{nope}"\n[facets.colour]\nlabels = ["red", "blue"]\n',
                 "[facets.colour]\nlabels = []\n",
                 "name = 1\n", "[facets.colour]\nlabels = [\"red\"]\nphrase = \"no slot\"\n"):
        bad.write_text(text)
        with pytest.raises(ValidationFailed):
            load_vocabulary(bad)
    with pytest.raises(ValidationFailed, match="generic"):
        load_vocabulary(tmp_path / "missing.toml")
    # each failed late (a traceback after minutes of scoring) or wrote "{main colour}." as a description
    for text, said in [('[facets.colour]\nlabels = ["red", "blue"]\nprompt = "a {} photo of {kind}"\n',
                        "KeyError: 'kind'"),
                       ('[facets.colour]\nlabels = ["red", "blue"]\nphrase = "in {}{"\n', "not a template with one"),
                       ('[facets."main colour"]\nlabels = ["red", "blue"]\n', "must be one word"),
                       ('[facets.colour]\nlabels = ["red", "blue"]\nfield = "category"\nprobe_features = ["colr"]\n',
                        "block names .stages, bands, head, colour, pixels")]:
        bad.write_text(text)
        with pytest.raises(ValidationFailed, match=said):
            load_vocabulary(bad)
    # a sentence that can write nothing made every item "unconfident": a re-run withdrew every description
    for text, said in [('sentence = "colour garment"\n[facets.colour]\nlabels = ["red", "blue"]\n'
                        '[facets.garment]\nlabels = ["dress", "skirt"]\n',
                        r"bad\.toml: sentence 'colour garment' names no facet; put the "
                        r"facets to write in braces, e.g. sentence = '\{colour\} \{garment\}'"),
                       ('sentence = ""\n[facets.colour]\nlabels = ["red", "blue"]\n', "names no facet"),
                       ('sentence = "{pattern}"\n[facets.pattern]\nlabels = ["solid", "plain"]\n'
                        'omit = ["solid", "plain"]\n[facets.colour]\nlabels = ["red", "blue"]\n',
                        "bad.toml: every facet the sentence names omits")]:
        bad.write_text(text)
        with pytest.raises(ValidationFailed, match=said):
            load_vocabulary(bad)
    bad.write_bytes('[facets.colour]\nlabels = ["rouge", "\xe9carlate"]\n'.encode("latin-1"))
    with pytest.raises(ValidationFailed, match="not UTF-8 text"):
        load_vocabulary(bad)
    bad.write_bytes(b'\xef\xbb\xbf[facets.colour]\nlabels = ["red", "blue"]\n')
    assert load_vocabulary(bad).facets[0].labels == ("red", "blue")


def test_a_vocabulary_that_writes_nothing_withdraws_nothing(env: tuple[Store, Settings, Path]) -> None:
    store, settings, vocab = env
    describe_items(store, settings, load_vocabulary(vocab), item_ids=["red-0", "blue-0"])
    before = _texts(store)
    assert {"red-0", "blue-0"} <= set(before)
    # braces forgotten, in a vocabulary built in code (past the file's checks): every item would compose ""
    silent = replace(load_vocabulary(vocab), sentence="colour shape")
    with pytest.raises(ValidationFailed, match="would be withdrawn; nothing was changed"):
        describe_items(store, settings, silent)
    assert _texts(store) == before


def test_probe_on_photo_colour_statistics(env: tuple[Store, Settings, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    store, settings, vocab = env
    probed = vocab.with_name("probed.toml")
    probe = 'field = "attributes.colour"\nprobe_weight = 1.0\nprobe_features = ["pixels"]\nprobe_hidden = 16'
    probed.write_text(VOCAB.replace("[facets.colour]", "[facets.colour]\n" + probe))
    ids = [f"{c}-{i}" for c in COLOURS for i in range(4)]
    seen: dict[str, tuple[int, int]] = {}
    describe_items(store, settings, load_vocabulary(probed), neighbours=3, item_ids=ids,
                   progress=lambda stage, done, total: seen.__setitem__(stage, (done, total)))
    # every step of minutes on a real catalogue says how far it is, each to its end
    assert list(seen) == ["labels", "pixels", "probes", "items"] and all(d == t for d, t in seen.values())
    texts = _texts(store)
    # the described items' photo statistics come from the label source's (read once): the same as read again
    monkeypatch.setattr(run, "chunk_features", lambda raw, chunk, v, st, src: run.probe_features(raw, chunk, v, st))
    describe_items(store, settings, load_vocabulary(probed), neighbours=3, item_ids=ids)
    assert _texts(store) == texts
    assert sum(texts[i].lower().startswith(i.split("-")[0]) for i in ids) / 24 >= 0.8  # weight 1: the probe alone
    with store.session() as s:
        rows = s.scalars(select(ItemDescription).join(Item).where(Item.external_id.in_(ids))).all()
        assert all(r.source.startswith("zero-shot+neighbours+probe:") for r in rows)


def test_a_small_facet_says_a_label_only_well_above_chance(env: tuple[Store, Settings, Path]) -> None:
    # two labels score >= 0.5 each time: at the default 0.25 every item was "confident" of a coin toss
    store, settings, vocab = env
    small = vocab.with_name("small.toml")
    small.write_text(VOCAB.replace("min_confidence = 0.0", "min_confidence = 0.25")
                     + '[facets.mood]\nlabels = ["happy", "sad"]\n')
    ids = [f"{c}-{i}" for c in COLOURS for i in range(4)]
    describe_items(store, settings, load_vocabulary(small), item_ids=ids)
    with store.session() as s:
        rows = s.scalars(select(ItemDescription).join(Item).where(Item.external_id.in_(ids))).all()
    moods = [f for r in rows for f in r.facets if f["facet"] == "mood"]
    assert any(f["score"] < 0.625 for f in moods)  # there are coin tosses to hold back
    assert all(f["used"] == (f["score"] >= 0.625) for f in moods)  # 1.25 x the uniform share, 1/2
    colours = [f for r in rows for f in r.facets if f["facet"] == "colour"]
    assert all(f["used"] == (f["score"] >= 0.25) for f in colours)  # six labels: 0.25 stands (1.25 / 6 < 0.25)


@pytest.mark.parametrize("field", ["attributes.material", "category"])  # absent; values that are no colour label
def test_a_field_no_item_carries_keeps_the_zero_shot_score_and_is_said(env: tuple[Store, Settings, Path],
                                                                      field: str) -> None:
    store, settings, vocab = env
    absent = vocab.with_name("absent.toml")  # another domain's field: its uniform "vote" pulled every score to 1/n
    absent.write_text(VOCAB.replace("[facets.colour]", f'[facets.colour]\nfield = "{field}"'))
    ids = ["red-0", "blue-1", "green-2"]

    def scores() -> dict[str, list[float]]:
        with store.session() as s:
            rows = s.scalars(select(ItemDescription).join(Item).where(Item.external_id.in_(ids))).all()
            return {r.source.split(":")[0] + str(r.item_id): [f["score"] for f in r.facets] for r in rows}

    stages: set[str] = set()
    report = describe_items(store, settings, load_vocabulary(absent), neighbours=3, item_ids=ids,
                            progress=lambda stage, done, total: stages.add(stage))
    assert report.labelled == {"colour": 0} and stages == {"items"}  # no photo read for a vote nobody casts
    assert any(f"facet 'colour': no item's {field} is one of its labels" in w for w in report.warnings)
    voted = scores()
    describe_items(store, settings, load_vocabulary(absent), neighbours=0, item_ids=ids)
    assert scores() == voted  # the same as zero-shot alone, stamped so ("zero-shot:", not "+neighbours")


def test_a_rerun_with_another_vocabulary_says_what_it_replaced(env: tuple[Store, Settings, Path]) -> None:
    store, settings, vocab = env
    describe_items(store, settings, load_vocabulary(vocab), item_ids=["red-0", "blue-0"])
    other = vocab.with_name("other.toml")
    other.write_text(VOCAB.replace('name = "test"', 'name = "other"'))
    report = describe_items(store, settings, load_vocabulary(other), item_ids=["red-0", "blue-0"])
    assert report.described == 2 and report.replaced == {"test": 2} and report.to_dict()["replaced"] == {"test": 2}
    assert describe_items(store, settings, load_vocabulary(other), item_ids=["red-0"]).replaced == {}  # its own


def test_an_unknown_item_is_refused_before_the_encoder_loads(env: tuple[Store, Settings, Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store, settings, vocab = env
    monkeypatch.setattr(run, "get_encoder", lambda s: pytest.fail("loaded the encoder (20 s) for a typo"))
    with pytest.raises(UnknownItem, match="'nope'"):
        describe_items(store, settings, load_vocabulary(vocab), item_ids=["nope"])
