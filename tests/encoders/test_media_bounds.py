"""Bounded preprocessing memory: a thin picture (1 x W) is refused before the resize that would scale its short side
to 224 (a 138-byte PNG cost about 4 GB), on every path that decodes one; and range-checked encoder settings."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from torchvision import transforms as T

from recsys.config import Settings
from recsys.encoders.media import (
    MAX_ASPECT,
    MODEL_SIDE,
    MediaError,
    MediaLimits,
    decode_image_bytes,
    image_from_bytes,
    load_media,
    scaled_pixels,
)
from recsys.errors import BadMedia

BOUND = MODEL_SIDE**2 * MAX_ASPECT
"""Pixels the resize may allocate for an accepted picture (2.5 million: under 10 MB of RGB)."""


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("w", "h"), [(20_000, 1), (1, 20_000), (4000, 1), (MAX_ASPECT + 1, 1), (1000, 19)])
def test_a_thin_picture_is_refused_before_it_is_resized(w: int, h: int) -> None:
    data = _png(w, h)
    assert len(data) < 2000  # a tiny file...
    assert scaled_pixels(w, h) > BOUND  # ...that the resize would have made this big (20,000 x 1: 1 billion pixels)
    with pytest.raises(MediaError, match=f"extreme aspect ratio {w}x{h}"):
        decode_image_bytes(data, MediaLimits())


def test_the_bound_is_what_the_preprocessing_allocates() -> None:
    """The widest accepted picture, resized as the towers' preprocessing does: its size is the bound, measured."""
    widest = decode_image_bytes(_png(MAX_ASPECT, 1), MediaLimits())[0]
    resized = T.Resize(MODEL_SIDE, interpolation=T.InterpolationMode.BICUBIC)(widest)
    assert resized.width * resized.height == scaled_pixels(MAX_ASPECT, 1) <= BOUND
    assert scaled_pixels(96, 144) == 224 * 336  # an ordinary photo: its short side scaled to 224


def test_catalogue_media_and_file_queries_give_the_reason(tmp_path: Path) -> None:
    banner = tmp_path / "banner.png"
    banner.write_bytes(_png(3000, 1))
    with pytest.raises(MediaError, match="extreme aspect ratio 3000x1"):
        load_media(str(banner), "image", MediaLimits())


def test_an_upload_is_refused_as_bad_media() -> None:
    with pytest.raises(BadMedia, match="extreme aspect ratio"):
        image_from_bytes(_png(1, 2000))


def test_a_picture_given_to_the_encoder_is_refused(tiny: Settings) -> None:
    """Notebooks hand PIL images to ``encode_images`` directly, past the decoder's guard."""
    from recsys.encoders import get_encoder

    enc = get_encoder(tiny)
    with pytest.raises(BadMedia, match="extreme aspect ratio"):
        enc.encode_images([Image.new("RGB", (MAX_ASPECT * 4 + 1, 4))])
    assert enc.encode_images([Image.new("RGB", (MAX_ASPECT * 4, 5))]).shape == (1, enc.dim)


def test_search_by_image_answers_422(tiny: Settings, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from recsys.api import create_app
    from recsys.service import Recommender
    from recsys.store import Store

    tiny.api = tiny.api.model_copy(update={"auth": False, "rate_limit_per_minute": 0})
    store = Store.open(tiny)
    store.upgrade()
    with TestClient(create_app(tiny, Recommender(tiny, store)), raise_server_exceptions=False) as client:
        r = client.post("/v1/search/image", files={"image": ("q.png", _png(60, 1), "image/png")}, data={"k": "3"})
    store.dispose()
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "bad_media" and "extreme aspect ratio" in r.json()["error"]["message"]


@pytest.mark.parametrize(("var", "value"), [
    ("RECSYS_ENCODER__BATCH_SIZE", "0"), ("RECSYS_ENCODER__NUM_WORKERS", "-1"),
    ("RECSYS_ENCODER__VIDEO_FRAMES", "0"), ("RECSYS_ENCODER__VIDEO_FRAMES", "1000"),
    ("RECSYS_ENCODER__MAX_IMAGE_BYTES", "0"), ("RECSYS_ENCODER__MAX_IMAGE_PIXELS", "-5"),
])
def test_encoder_settings_out_of_range_name_their_variable(monkeypatch: pytest.MonkeyPatch, var: str,
                                                          value: str) -> None:
    from recsys.cli import settings_problem

    monkeypatch.setenv(var, value)
    with pytest.raises(Exception) as exc:
        Settings()
    message = settings_problem(exc.value)
    assert message is not None and message.startswith(f"{var}: Input should be"), message


def test_encoder_settings_in_range_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_ENCODER__BATCH_SIZE", "1")
    monkeypatch.setenv("RECSYS_ENCODER__NUM_WORKERS", "0")
    monkeypatch.setenv("RECSYS_ENCODER__VIDEO_FRAMES", "64")
    e = Settings().encoder
    assert (e.batch_size, e.num_workers, e.video_frames) == (1, 0, 64)
