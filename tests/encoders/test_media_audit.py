"""Media as users have them (audit "media"): EXIF orientation, the pixel setting, video memory, clear reasons and
percent-encoded file URLs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recsys.encoders.media import (
    MediaError,
    MediaLimits,
    decode_image_bytes,
    frame_size,
    image_from_bytes,
    load_media,
)

LIMITS = MediaLimits(max_pixels=40_000_000, max_bytes=5_000_000, video_frames=3)


def _sideways(orientation: int | None) -> bytes:
    """A 20x10 PNG, left half red and right half blue, with an EXIF orientation tag (or none)."""
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10] = (255, 0, 0)
    a[:, 10:] = (0, 0, 255)
    im = Image.fromarray(a)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("decode", [lambda d: decode_image_bytes(d, LIMITS)[0], image_from_bytes])
def test_a_photo_tagged_sideways_is_decoded_upright(decode: object) -> None:
    im = decode(_sideways(6))  # type: ignore[operator]
    assert im.size == (10, 20)  # rotated 90 degrees clockwise to display: red on top, blue below
    assert im.getpixel((5, 2)) == (255, 0, 0) and im.getpixel((5, 17)) == (0, 0, 255)


def test_a_picture_without_orientation_keeps_its_pixels() -> None:
    for data in (_sideways(None), _sideways(1)):
        raw = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(np.asarray(decode_image_bytes(data, LIMITS)[0]), raw)


def _big_png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (w, h)).save(buf, "PNG")  # 1 bit per pixel: a few KB for 100 million pixels
    return buf.getvalue()


def test_the_pixel_setting_governs_above_pillows_default() -> None:
    data = _big_png(10_000, 9_500)  # 95 Mpx: over Pillow's 89.5 Mpx
    ok = decode_image_bytes(data, MediaLimits(max_pixels=200_000_000, max_bytes=50_000_000))
    assert ok[0].size == (10_000, 9_500)
    with pytest.raises(MediaError, match=r"40000000 \(RECSYS_ENCODER__MAX_IMAGE_PIXELS\)"):
        decode_image_bytes(data, MediaLimits(max_pixels=40_000_000, max_bytes=50_000_000))


def test_a_picture_past_pillows_hard_limit_names_the_setting() -> None:
    data = _big_png(19_000, 19_000)  # 361 Mpx: Pillow's own error (over twice its limit) before our check
    with pytest.raises(MediaError, match=r"40000000 pixels \(RECSYS_ENCODER__MAX_IMAGE_PIXELS\)") as e:
        decode_image_bytes(data, LIMITS)
    assert "could be decompression bomb DOS attack" not in str(e.value)


@pytest.mark.parametrize(("head", "reason"), [
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", r"not an image recsys can read \(HEIC\).*JPEG/PNG/WebP"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", r"not an image recsys can read \(AVIF\)"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', r"not an image recsys can read \(SVG\)"),
    (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",
     "a video file in the image column: put it in `video`"),
])
def test_common_foreign_files_are_named(tmp_path: Path, head: bytes, reason: str) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(head + b"\x00" * 64)
    with pytest.raises(MediaError, match=reason):
        load_media(str(path), "image", LIMITS)


def test_file_urls_are_percent_decoded(tmp_path: Path) -> None:
    path = tmp_path / "file url é.png"
    path.write_bytes(_sideways(None))
    url = "file://" + str(tmp_path).replace(" ", "%20") + "/file%20url%20%C3%A9.png"
    assert load_media(url, "image", LIMITS)[0].size == (20, 10)


def test_video_frames_are_kept_small() -> None:
    assert frame_size(3840, 2160) == (796, 448)
    assert frame_size(320, 240) == (320, 240)  # small frames as they are
    w, h = frame_size(20_000, 500)
    assert max(w, h) <= 4 * 448


def _video(path: Path, w: int, h: int, n: int = 4) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for _ in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 120, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_a_large_video_is_decoded_into_small_frames(tmp_path: Path) -> None:
    frames = load_media(str(_video(tmp_path / "big.mp4", 1280, 720)), "video", LIMITS)
    assert frames and all(f.size == (796, 448) for f in frames)


def test_an_audio_only_file_has_no_video_frames(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "sound.mp4"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(MediaError, match="no video frames"):
        load_media(str(path), "video", LIMITS)
