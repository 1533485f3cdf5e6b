"""``encoder fit`` on a tiny catalogue with a known answer (colour in the photo and in the text), and tagging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.encoders import embed_catalog, fit_encoder, get_encoder, load_item_vectors, read_vocabulary, tag_items
from recsys.encoders.training import FitParams
from recsys.store import Artifact, ItemTag, Store
from tests.encoders.fixtures import colour_catalogue


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Settings]:
    """One fitted and embedded tiny catalogue for the whole module (fitting is the slow part)."""
    tmp = tmp_path_factory.mktemp("fit")
    settings = Settings(home=tmp / "home", database_url=f"sqlite:///{tmp / 't.db'}")
    settings.encoder.batch_size, settings.encoder.num_workers, settings.encoder.device = 8, 0, "cpu"
    settings.encoder.text_fields = {"title": 1.0, "category": 1.0, "attributes.colour": 1.0}
    store = Store(settings.db_url)
    store.upgrade()
    colour_catalogue(store, tmp / "img", per_colour=4)
    seen: dict[str, tuple[int, int]] = {}
    report = fit_encoder(store, settings, params=FitParams(epochs=30, batch_size=64, val_pairs=4, lr=5e-3),
                         progress=lambda part, done, total: seen.__setitem__(part, (done, total)))
    assert report.pairs_train == 20 and report.pairs_val == 4
    # every part says how far it is, the text features too (minutes of silence on a large catalogue before)
    assert list(seen) == ["image features", "text features", "head steps"], seen
    assert all(done == total > 0 for done, total in seen.values()), seen
    # 4 held out: recall@10 would be 1.0 by construction, so it is not reported
    assert report.image_to_text_recall_at_10 is None and "not measured" in report.recall_note
    embed_catalog(store, settings)
    return store, settings


def test_fit_records_artifact_and_becomes_current(env: tuple[Store, Settings]) -> None:
    store, fitted = env
    enc = get_encoder(fitted)
    assert enc.fitted and enc.id.startswith("recsys-lite@")
    with store.session() as s:
        art = s.scalars(select(Artifact).where(Artifact.kind == "encoder")).one()
    assert art.version == enc.id and Path(art.path, "heads.pt").is_file()
    manifest = json.loads(Path(art.path, "manifest.json").read_text())
    assert manifest["towers"] == enc.towers.id and manifest["dim"] == enc.dim


def test_fitted_colour_words_find_their_images(env: tuple[Store, Settings]) -> None:
    store, fitted = env
    vecs = load_item_vectors(fitted, store)
    enc = get_encoder(fitted)
    hits = 0
    for colour in ("red", "blue", "green", "black", "yellow", "white"):
        q = enc.encode_texts([colour])[0]
        top = np.argsort(-(vecs.image @ q))[:4]
        hits += sum(vecs.item_ids[i].startswith(colour) for i in top)
    assert hits / 24 >= 0.6


def test_zero_shot_tags_stored_with_scores(env: tuple[Store, Settings], tmp_path: Path) -> None:
    store, fitted = env
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("# facets\ncolour: red, blue, green, black, yellow, white\nshape: box, dress\n")
    vocab = read_vocabulary(vocab_file)
    report = tag_items(store, fitted, vocab)
    assert report.tags == 2 * 24
    with store.session() as s:
        tags = s.scalars(select(ItemTag).where(ItemTag.facet == "colour")).all()
    assert all(0.0 <= t.score <= 1.0 for t in tags)
    # Re-tagging replaces, never duplicates.
    assert tag_items(store, fitted, vocab).tags == 2 * 24
    with store.session() as s:
        assert len(s.scalars(select(ItemTag)).all()) == 48
