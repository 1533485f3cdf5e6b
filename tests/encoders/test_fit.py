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


@pytest.fixture
def fitted(store: Store, enc_settings: Settings, tmp_path: Path) -> Settings:
    colour_catalogue(store, tmp_path / "img", per_colour=4)
    enc_settings.encoder.text_fields = {"title": 1.0, "category": 1.0, "attributes.colour": 1.0}
    report = fit_encoder(store, enc_settings, params=FitParams(epochs=60, batch_size=64, val_pairs=4, lr=3e-3))
    assert report.pairs_train == 20 and report.pairs_val == 4
    assert 0.0 <= report.image_to_text_recall_at_10 <= 1.0
    return enc_settings


def test_fit_records_artifact_and_becomes_current(store: Store, fitted: Settings) -> None:
    enc = get_encoder(fitted)
    assert enc.fitted and enc.id.startswith("recsys-lite@")
    with store.session() as s:
        art = s.scalars(select(Artifact).where(Artifact.kind == "encoder")).one()
    assert art.version == enc.id and Path(art.path, "heads.pt").is_file()
    manifest = json.loads(Path(art.path, "manifest.json").read_text())
    assert manifest["towers"] == enc.towers.id and manifest["dim"] == enc.dim


def test_fitted_colour_words_find_their_images(store: Store, fitted: Settings) -> None:
    embed_catalog(store, fitted)
    vecs = load_item_vectors(fitted, store)
    enc = get_encoder(fitted)
    hits = 0
    for colour in ("red", "blue", "green", "black", "yellow", "white"):
        q = enc.encode_texts([colour])[0]
        top = np.argsort(-(vecs.image @ q))[:4]
        hits += sum(vecs.item_ids[i].startswith(colour) for i in top)
    assert hits / 24 >= 0.6


def test_zero_shot_tags_stored_with_scores(store: Store, fitted: Settings, tmp_path: Path) -> None:
    embed_catalog(store, fitted)
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
