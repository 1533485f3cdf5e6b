"""An encoder fit with no (image, text) pair says which half is missing and what to do (defect 4 of the trainer
review: an images-only catalogue was told to import images). Here, beside the ranker's other messages, it uses the
encoder tests' tiny towers."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.encoders import fit_encoder
from recsys.encoders.training import FitParams
from recsys.errors import EncoderError
from recsys.store import Store
from tests.encoders.conftest import enc_settings, store, tiny  # noqa: F401  (the fixtures)
from tests.encoders.fixtures import COLOURS, add_item, garment

QUICK = FitParams(epochs=1, batch_size=8)


def test_images_without_text_name_the_text_fields(store: Store, tiny: Settings, tmp_path: Path) -> None:  # noqa: F811
    for i, rgb in enumerate(list(COLOURS.values())[:5]):
        add_item(store, f"i{i}", "", media=[("image", garment(tmp_path / f"{i}.jpg", rgb))])
    with pytest.raises(EncoderError) as e:
        fit_encoder(store, tiny, params=QUICK)
    msg = e.value.message
    assert "5 item(s) have a decodable image but none has text in the configured text fields" in msg
    assert "RECSYS_ENCODER__TEXT_FIELDS" in msg and "images first" not in msg


def test_text_without_images_asks_for_images(store: Store, tiny: Settings) -> None:  # noqa: F811
    for i in range(3):
        add_item(store, f"t{i}", f"a shirt {i}")
    with pytest.raises(EncoderError, match=r"3 item\(s\) have text but none has a decodable image: import a "
                                           r"catalogue with images"):
        fit_encoder(store, tiny, params=QUICK)


def test_no_items_asks_for_a_catalogue(store: Store, tiny: Settings) -> None:  # noqa: F811
    with pytest.raises(EncoderError, match="no items to fit the encoder on: import a catalogue"):
        fit_encoder(store, tiny, params=QUICK)
