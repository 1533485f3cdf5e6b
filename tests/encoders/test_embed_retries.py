"""A medium that failed for a fixable reason is retried by the next embed (the healthy items stay cached), and an
embed whose current heads are gone is refused instead of using random heads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.encoders import embed_catalog, fit_encoder, get_encoder, get_preset, load_item_vectors
from recsys.encoders.encoder import current_heads_dir
from recsys.encoders.training import FitParams
from recsys.encoders.vectors import snapshot_dir
from recsys.errors import IncompatibleArtifact
from recsys.store import ItemMedia, Store
from tests.encoders.fixtures import COLOURS, add_item, colour_catalogue, garment


def test_a_photo_over_the_byte_limit_is_retried_once_the_limit_is_raised(store: Store, tiny: Settings,
                                                                        tmp_path: Path) -> None:
    big = garment(tmp_path / "big.jpg", COLOURS["red"])
    small = garment(tmp_path / "small.png", COLOURS["blue"], fmt="PNG")
    assert big.stat().st_size > small.stat().st_size
    add_item(store, "big", "red box", media=[("image", big)])
    add_item(store, "small", "blue box", media=[("image", small)])
    add_item(store, "text", "text only")
    tiny.encoder.max_image_bytes = small.stat().st_size  # "file too large ... (RECSYS_ENCODER__MAX_IMAGE_BYTES)"
    first = embed_catalog(store, tiny)
    assert (first.encoded, first.with_image, first.broken_media) == (3, 1, 1)
    assert "file too large" in first.errors["big"]
    before = load_item_vectors(tiny, store)
    # nothing fixed yet: the failed photo is tried again and said again; its item keeps its vector, bit for bit (the
    # index sees no change)
    same = embed_catalog(store, tiny)
    assert (same.encoded, same.cached, same.broken_media) == (0, 3, 1) and "file too large" in same.errors["big"]
    np.testing.assert_array_equal(load_item_vectors(tiny, store).fused, before.fused)
    tiny.encoder.max_image_bytes = 30_000_000
    fixed = embed_catalog(store, tiny)
    assert (fixed.encoded, fixed.cached, fixed.with_image, fixed.broken_media) == (1, 2, 2, 0), fixed
    with store.session() as s:
        assert s.scalars(select(ItemMedia.status).where(ItemMedia.uri == str(big))).one() == "ok"
    settled = embed_catalog(store, tiny)
    assert (settled.encoded, settled.cached, settled.with_image) == (0, 3, 2)


def test_a_missing_file_is_encoded_once_it_appears(store: Store, tiny: Settings, tmp_path: Path) -> None:
    later = tmp_path / "later.jpg"
    add_item(store, "later", "a photo copied in afterwards", media=[("image", later)])
    assert embed_catalog(store, tiny).with_image == 0
    garment(later, COLOURS["green"])
    report = embed_catalog(store, tiny)
    assert (report.encoded, report.with_image, report.broken_media) == (1, 1, 0)


@pytest.fixture
def fitted(store: Store, tiny: Settings, tmp_path: Path) -> Settings:
    colour_catalogue(store, tmp_path / "img", per_colour=1)
    fit_encoder(store, tiny, params=FitParams(epochs=1, batch_size=8, val_pairs=0))
    return tiny


def test_embed_refuses_when_the_current_heads_are_gone(store: Store, fitted: Settings, tmp_path: Path) -> None:
    preset = get_preset(fitted.encoder.preset, fitted)
    heads = current_heads_dir(fitted, preset)
    assert heads is not None
    shutil.move(heads, tmp_path / "elsewhere")
    with pytest.raises(IncompatibleArtifact, match=rf"CURRENT names the encoder heads '{heads.name}', which are not "
                                                   r"under .*moved or deleted.*recsys encoder fit.*recsys build"):
        embed_catalog(store, fitted)
    with pytest.raises(IncompatibleArtifact, match=heads.name):
        get_encoder(fitted)
    assert not snapshot_dir(fitted, f"{preset.name}@unfitted").exists()  # no snapshot of random heads
    # `recsys build` still sees "not fitted" and fits new heads; then embedding works again
    assert current_heads_dir(fitted, preset) is None
    fit_encoder(store, fitted, params=FitParams(epochs=1, batch_size=8, val_pairs=0))
    assert get_encoder(fitted).fitted and embed_catalog(store, fitted).items == len(COLOURS)


def test_no_heads_ever_fitted_still_embeds(store: Store, tiny: Settings, tmp_path: Path) -> None:
    add_item(store, "a", "red shirt", media=[("image", garment(tmp_path / "a.jpg", COLOURS["red"]))])
    assert not get_encoder(tiny).fitted and embed_catalog(store, tiny).items == 1
