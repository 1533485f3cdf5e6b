"""Fitting and model identity on the edges: too few pairs, a held-out recall that would mean nothing, and a local
checkpoint replaced in place."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.config import Settings
from recsys.encoders import embed_catalog, fit_encoder, get_encoder, get_preset, load_item_vectors
from recsys.encoders.encoder import current_heads_dir, load_towers
from recsys.encoders.fit import MIN_PAIRS
from recsys.encoders.heads import Heads
from recsys.encoders.training import RECALL_K, FitParams, PairData, evaluate
from recsys.errors import EncoderError, IncompatibleArtifact
from recsys.store import Store
from tests.encoders.fixtures import COLOURS, TINY_CFG, add_item, colour_catalogue, garment

QUICK = FitParams(epochs=2, batch_size=8)


@pytest.fixture
def mlp_tiny(tiny: Settings) -> Settings:
    """The tiny preset with the heads recsys-lite uses (standardised features, a PCA basis): the kind that crashed."""
    path = tiny.home / "presets" / "tiny.json"
    preset = json.loads(path.read_text())
    path.write_text(json.dumps({**preset, "head": "mlp", "dim": 16, "hidden": 32, "reduce": 16}))
    return tiny


def _items(store: Store, d: Path, n: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for i, (name, rgb) in enumerate(list(COLOURS.items())[:n]):
        add_item(store, f"i{i}", f"{name} box", media=[("image", garment(d / f"{i}.jpg", rgb))])


def test_one_pair_is_refused_saying_how_many_are_needed(store: Store, mlp_tiny: Settings, tmp_path: Path) -> None:
    _items(store, tmp_path / "img", 1)
    add_item(store, "text-only", "a shirt with no photo")
    with pytest.raises(EncoderError, match=rf"only 1 item\(s\) have both a decodable image and text; fitting the "
                                           rf"encoder needs at least {MIN_PAIRS}"):
        fit_encoder(store, mlp_tiny, params=QUICK)
    assert current_heads_dir(mlp_tiny, get_preset(mlp_tiny.encoder.preset, mlp_tiny)) is None  # nothing published


def test_the_minimum_fits_with_finite_heads_and_no_recall(store: Store, mlp_tiny: Settings, tmp_path: Path) -> None:
    _items(store, tmp_path / "img", MIN_PAIRS)
    report = fit_encoder(store, mlp_tiny, params=QUICK)
    assert report.pairs_train + report.pairs_val == MIN_PAIRS
    enc = get_encoder(mlp_tiny)
    assert enc.fitted and all(bool(torch.isfinite(t).all()) for t in enc.heads.state_dict().values())
    assert report.image_to_text_recall_at_10 is None and report.text_to_image_recall_at_10 is None
    assert report.recall_note.startswith(f"not measured: {report.pairs_val} held-out pairs")
    assert enc.manifest["recall_note"] == report.recall_note


def test_held_out_recall_is_reported_only_from_more_than_k_pairs() -> None:
    """Random heads on random pairs: recall@10 of 10 pairs is 1.0 whatever the heads, so it is not reported."""
    rng = np.random.default_rng(0)

    def pairs(n: int) -> PairData:
        return PairData([str(i) for i in range(n)], rng.normal(size=(n, 8)).astype(np.float32),
                        rng.normal(size=(n, 8)).astype(np.float32), np.arange(n)[:, None], np.ones((n, 1), np.float32),
                        ["title"])

    heads = Heads(8, 8, 4, hidden=16)
    assert evaluate(heads, pairs(RECALL_K)) == {}
    chance = evaluate(heads, pairs(200))
    assert set(chance) == {"image_to_text_recall@10", "text_to_image_recall@10"}
    assert chance["image_to_text_recall@10"] < 0.5  # about 10/200 for random heads


def test_a_checkpoint_replaced_in_place_is_a_new_model(store: Store, tiny: Settings, tmp_path: Path) -> None:
    colour_catalogue(store, tmp_path / "img", per_colour=1)
    first = embed_catalog(store, tiny)
    old_vectors = load_item_vectors(tiny, store).image
    preset = get_preset(tiny.encoder.preset, tiny)
    old_id = get_encoder(tiny).towers.id
    assert preset.checkpoint
    torch.manual_seed(1)  # retrained: other weights, the same path
    from open_clip.model import CLIP

    torch.save(CLIP(**TINY_CFG).state_dict(), preset.checkpoint)  # type: ignore[arg-type]
    assert get_encoder(tiny).towers.id != old_id
    again = embed_catalog(store, tiny)
    assert again.encoded == first.items, again  # no vector of the old model served
    assert not np.allclose(load_item_vectors(tiny, store).image, old_vectors, atol=1e-3)


def test_heads_fitted_on_the_old_checkpoint_are_refused(store: Store, tiny: Settings, tmp_path: Path) -> None:
    colour_catalogue(store, tmp_path / "img", per_colour=1)
    fit_encoder(store, tiny, params=FitParams(epochs=1, batch_size=8, val_pairs=0))
    checkpoint = get_preset(tiny.encoder.preset, tiny).checkpoint
    assert checkpoint
    torch.manual_seed(2)
    from open_clip.model import CLIP

    torch.save(CLIP(**TINY_CFG).state_dict(), checkpoint)  # type: ignore[arg-type]
    with pytest.raises(IncompatibleArtifact, match="were fitted for towers .*run `recsys encoder fit` again"):
        get_encoder(tiny)


def test_a_copied_checkpoint_keeps_its_identity(tiny: Settings, tmp_path: Path) -> None:
    """The identity is the content (SHA-256), not the path or the time: a copied home and model keep their caches."""
    preset = get_preset(tiny.encoder.preset, tiny)
    assert preset.checkpoint
    copy = tmp_path / "elsewhere" / "copy.pt"
    copy.parent.mkdir()
    shutil.copy(preset.checkpoint, copy)
    os.utime(copy, ns=(1, 10**18))
    moved = preset.model_copy(update={"checkpoint": str(copy)})
    assert load_towers(moved, "cpu").id == load_towers(preset, "cpu").id
