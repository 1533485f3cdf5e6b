"""Safe media loading: every failure kind becomes a reason, never an exception that escapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.encoders.media import MediaError, MediaLimits, image_from_bytes, load_image_file, load_media
from recsys.errors import BadMedia
from tests.encoders.fixtures import COLOURS, animated_gif, broken_media, garment

LIMITS = MediaLimits(max_pixels=40_000_000, max_bytes=1_000_000, video_frames=3)


@pytest.mark.parametrize(("kind", "reason"), [
    ("truncated", "truncated"), ("not_image", "not an image"), ("bomb", "decompression bomb"),
    ("too_many_pixels", "decompression bomb guard"), ("gigantic", "gigantic dimensions"),
    ("unsupported", "unsupported image format"), ("missing", "file not found"),
])
def test_broken_media_gives_reason(tmp_path: Path, kind: str, reason: str) -> None:
    files = broken_media(tmp_path)
    with pytest.raises(MediaError, match=reason):
        load_media(str(files[kind]), "image", LIMITS)


def test_oversized_file_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 2_000_000)
    with pytest.raises(MediaError, match="file too large"):
        load_media(str(big), "image", LIMITS)


def test_good_image_and_rgba(tmp_path: Path) -> None:
    im = load_media(str(garment(tmp_path / "a.png", COLOURS["blue"], fmt="PNG")), "image", LIMITS)
    assert len(im) == 1 and im[0].mode == "RGB"


def test_animated_video_frames_evenly_spaced(tmp_path: Path) -> None:
    colours = [(i * 20, 0, 0) for i in range(10)]
    frames = load_media(str(animated_gif(tmp_path / "v.gif", colours)), "video", LIMITS)
    assert len(frames) == 3
    reds = [f.getpixel((0, 0))[0] for f in frames]  # type: ignore[index]
    assert reds[0] < reds[1] < reds[2]


def test_query_helpers_raise_bad_media(tmp_path: Path) -> None:
    with pytest.raises(BadMedia, match="not an image"):
        image_from_bytes(b"hello")
    with pytest.raises(BadMedia, match="file not found"):
        load_image_file(str(tmp_path / "nope.jpg"))
