"""Photo colour statistics (recsys.describe.pixels) on drawn images: the garment's colour is read from the pixels
unlike the background, a white garment is told from an off-white one, unreadable photos give zeros, and the probe
options (hidden layer, "pixels" block) parse and fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recsys.describe.pixels import BINS, DIM, pixel_colour, pixel_features, srgb_to_lab
from recsys.describe.probe import feature_columns, fit_probe, lite_blocks
from recsys.describe.vocabulary import parse_vocabulary
from recsys.encoders.media import MediaLimits
from recsys.encoders.text import ItemRecord
from recsys.errors import ValidationFailed

HIST = int(np.prod(BINS))


def _photo(garment: tuple[int, int, int], background: tuple[int, int, int] = (235, 235, 235)) -> Image.Image:
    im = Image.new("RGB", (112, 168), background)
    im.paste(Image.new("RGB", (56, 84), garment), (28, 42))  # a quarter of the frame, centred
    return im


def test_lab_of_known_colours() -> None:
    lab = srgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert np.allclose(lab[0], [100, 0, 0], atol=0.5) and np.allclose(lab[1], [0, 0, 0], atol=0.5)
    assert lab[2, 1] > 70 and lab[2, 2] > 60  # red: a* and b* both high


def test_the_garment_not_the_background_is_measured() -> None:
    red = pixel_colour(_photo((200, 20, 30)))
    assert red.shape == (DIM,) and red.dtype == np.float32
    mean_lab, share = red[HIST : HIST + 3], red[-1]
    assert mean_lab[1] > 50  # the red square's a*, not the grey background's 0
    assert 0.2 < share < 0.3  # a quarter of the frame
    assert np.isclose(red[:HIST].sum(), 1.0, atol=1e-4)
    white, off_white = pixel_colour(_photo((255, 255, 255))), pixel_colour(_photo((240, 232, 212)))
    assert off_white[HIST + 2] > white[HIST + 2] + 3  # b*: yellower
    assert not np.allclose(white, off_white)


def test_pixel_features_average_an_items_photos_and_zero_the_unreadable(tmp_path: Path) -> None:
    for name, colour in (("r", (200, 20, 30)), ("b", (20, 30, 200))):
        _photo(colour).save(tmp_path / f"{name}.png")
    items = [ItemRecord("a", media=(("image", str(tmp_path / "r.png")), ("image", str(tmp_path / "b.png")))),
             ItemRecord("b", media=(("image", str(tmp_path / "missing.png")),)),
             ItemRecord("c", media=(("image", str(tmp_path / "r.png")),))]
    x = pixel_features(items, MediaLimits(), workers=2)
    assert x.shape == (3, DIM)
    assert not x[1].any()
    red, blue = pixel_colour(_photo((200, 20, 30))), pixel_colour(_photo((20, 30, 200)))
    assert np.allclose(x[0], (red + blue) / 2, atol=1e-5) and np.allclose(x[2], red, atol=1e-5)
    assert pixel_features([], MediaLimits()).shape == (0, DIM)


def test_a_hidden_layer_probe_learns_a_label_a_linear_one_cannot() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (4000, 4)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)  # xor: no line separates it
    mlp, linear = fit_probe(x, y, 2, np.arange(4), hidden=64), fit_probe(x, y, 2, np.arange(4))
    assert mlp is not None and linear is not None and mlp.hidden is not None
    test = rng.normal(0, 1, (300, 4)).astype(np.float32)
    truth = (test[:, 0] > 0) ^ (test[:, 1] > 0)
    p = mlp.predict(test)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p.argmax(1) == truth).mean() > 0.85 > (linear.predict(test).argmax(1) == truth).mean()
    again = fit_probe(x, y, 2, np.arange(4), hidden=64)
    assert again is not None and np.allclose(again.predict(test), p)  # seeded


def test_pixels_block_adds_the_columns_after_the_towers() -> None:
    dim = max(end for _, end in lite_blocks().values())
    cols = feature_columns("recsys-lite-towers/f1", dim, ["colour", "pixels"], DIM)
    assert len(cols) == np.diff(lite_blocks()["colour"])[0] + DIM and cols[-1] == dim + DIM - 1
    assert len(feature_columns("recsys-lite-towers/f1", dim, ["colour"], DIM)) == np.diff(lite_blocks()["colour"])[0]
    assert len(feature_columns("open_clip/ViT-B-32", 512, ["pixels"], DIM)) == 512 + DIM


def test_vocabulary_checks_probe_hidden() -> None:
    facet = {"labels": ["a", "b"], "field": "category", "probe_weight": 0.5, "probe_hidden": 64}
    assert parse_vocabulary({"facets": {"kind": facet}}, "t").facets[0].probe_hidden == 64
    with pytest.raises(ValidationFailed, match="probe_hidden"):
        parse_vocabulary({"facets": {"kind": {**facet, "probe_hidden": -1}}}, "t")
