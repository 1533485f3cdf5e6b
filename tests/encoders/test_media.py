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
    ("unsupported", "not an image recsys can read \\(PPM\\)"), ("missing", "file not found"),
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


def _video(path: Path, n: int, size: int = 32) -> Path:
    """An MPEG-4 video of ``n`` solid frames whose red rises from 0 to 250 (frame i: 250 * i / (n - 1))."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n):
            a = np.zeros((size, size, 3), np.uint8)
            a[..., 0] = round(250 * i / (n - 1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_a_long_video_is_not_decoded_into_memory_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every frame became a picture before 3 were kept: a 27 KB clip of 600 frames took 2.2 GB
    import av

    pictures = 0
    to_image = av.VideoFrame.to_image

    def counted(self: av.VideoFrame, *args: object, **kwargs: object) -> object:
        nonlocal pictures
        pictures += 1
        return to_image(self, *args, **kwargs)

    path = _video(tmp_path / "long.mp4", 400)
    monkeypatch.setattr(av.VideoFrame, "to_image", counted)
    frames = load_media(str(path), "video", LIMITS)
    assert len(frames) == 3 and pictures < 200  # 24 kept at a time, every other one dropped when full
    reds = [f.getpixel((16, 16))[0] for f in frames]  # type: ignore[index]
    assert reds[0] < 20 and 100 < reds[1] < 150 and reds[2] > 200  # first, middle and late frames, evenly spread


@pytest.mark.parametrize(("mode", "value", "expected"), [
    ("I;16", 32768, 128), ("I;16", 1000, 4), ("I", 65535, 255), ("F", 0.5, 128), ("F", 1.0, 255),
])
def test_deep_greyscale_is_scaled_not_clipped(tmp_path: Path, mode: str, value: float, expected: int) -> None:
    # Pillow's conversion clipped at 255: 16-bit photos came out white, float ones black, recorded as "ok"
    from PIL import Image

    im = Image.new(mode, (8, 8), value)  # type: ignore[arg-type]
    path = tmp_path / "deep.tif"
    im.save(path)
    frame = load_media(str(path), "image", LIMITS)[0]
    assert frame.mode == "RGB" and abs(frame.getpixel((4, 4))[0] - expected) <= 1  # type: ignore[index]
