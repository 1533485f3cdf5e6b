"""Safe media loading: every failure becomes a short reason string, never an exception that stops a batch.

Guards: missing or unreadable file, file over ``max_image_bytes``, not an image, unsupported format, decompression
bombs and gigantic dimensions (``max_image_pixels``), extreme aspect ratios (:data:`MAX_ASPECT`), truncated or
corrupt data. Videos (and animated GIF/WebP) give a few evenly spaced frames; video files are decoded with PyAV when
it is installed. :class:`MediaFinder` finds the pictures of a data directory moved or copied since its import.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from recsys.config import Settings

log = logging.getLogger(__name__)

IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg"})
MAX_SIDE = 20_000
"""Either side above this is refused whatever the pixel budget (gigantic dimensions)."""
MAX_ASPECT = 50
"""A picture whose long side is more than this many times its short side is refused. Preprocessing scales the short
side to the model's input size (224) before its centre crop, so a 1 x 20,000 banner of 138 bytes became 224 x 4.5
million pixels (about 4 GB, in the server too: search by image); at this bound the scaled picture has at most
``MODEL_SIDE**2 * MAX_ASPECT`` pixels (2.5 million, under 10 MB)."""
MODEL_SIDE = 224
"""The input side of the towers' preprocessing (for :func:`scaled_pixels`; open_clip presets use 224 too)."""


@dataclass(frozen=True)
class MediaLimits:
    max_pixels: int = 40_000_000
    max_bytes: int = 30_000_000
    video_frames: int = 4


class MediaError(Exception):
    """Internal: carries the human reason. Callers record ``str(e)`` on ``ItemMedia.error``."""


def local_path(uri: str) -> Path:
    """The file a medium's path or ``file://`` URL names (another URL names none: its own text)."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path) if parsed.scheme == "file" else uri)  # file:///a%20b.png names "a b.png"


def url_scheme(uri: str) -> str | None:
    """The scheme of a medium that is a URL other than ``file://`` (``https``, ``s3``...), None for a local file.
    One letter before ":" is a Windows drive, not a scheme."""
    scheme = urlparse(uri).scheme.lower()
    return scheme if "://" in uri and len(scheme) > 1 and scheme != "file" else None


def is_remote(uri: str) -> bool:
    """An ``http(s)`` image: never fetched, shown from its address (status pending, not broken)."""
    return urlparse(uri).scheme in ("http", "https")


class MediaFinder:
    """Where to read a recorded medium from: the file its path names when that is there, else the same picture in
    a data directory moved or copied since the import (:func:`~recsys.store.media_roots.relocated`, which returns
    only files under the media roots), else the recorded path (whose read then says "file not found"). Answers are
    kept for the finder's life (one embed or fit): a moved home asks once per file."""

    def __init__(self, home: Path | None = None, roots: Sequence[Path] = ()) -> None:
        self.home, self.roots = home, roots if isinstance(roots, list) else list(roots)  # a MediaRoots stays one
        self._found: dict[str, str] = {}

    @classmethod
    def of(cls, settings: Settings) -> MediaFinder:
        from recsys.store.media_roots import media_roots

        return cls(settings.home, media_roots(settings))

    def __call__(self, uri: str) -> str:
        found = self._found.get(uri)
        if found is None:
            found = self._found[uri] = self._find(uri)
        return found

    def _find(self, uri: str) -> str:
        if self.home is None or url_scheme(uri):  # a URL: its read says why it is not read
            return uri
        from recsys.store.media_roots import private, relocated

        path = local_path(uri)
        if private(Path(os.path.realpath(path)), self.roots):
            return PRIVATE + uri  # never opened: its read says why
        if os.path.exists(path):  # there, even if unreadable: its own read says why
            return uri

        moved = relocated(path, self.home, self.roots)
        return uri if moved is None else str(moved)


REMOTE_REASON = ("remote images are not fetched, so not embedded (the explorer still shows them from their address): "
                 "download them and import the local files")
PRIVATE = "recsys-private:"
"""What :class:`MediaFinder` answers, before the recorded path, for one of the data directory's own files (the store's
database, keys, derived files: :func:`recsys.store.media_roots.private`); it is never opened."""


def _read_bytes(uri: str, limits: MediaLimits) -> bytes:
    if uri.startswith(PRIVATE):
        from recsys.store.media_roots import PRIVATE_REASON

        raise MediaError(PRIVATE_REASON)
    if is_remote(uri):
        raise MediaError(REMOTE_REASON)
    scheme = url_scheme(uri)
    if scheme:  # "s3://b/a.jpg" read as a local path said "file not found: s3:/b/a.jpg"
        raise MediaError(f"{scheme}:// images are not fetched: download them and import the local files "
                         "(recsys reads local paths and file:// URLs; http(s) images are shown from their address)")
    path = local_path(uri)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise MediaError(f"file not found: {path}") from None
    except OSError as e:
        raise MediaError(f"cannot read {path}: {e.strerror}") from None
    if size == 0:
        raise MediaError("empty file")
    if size > limits.max_bytes:
        raise MediaError(f"file too large: {size} bytes > {limits.max_bytes} (RECSYS_ENCODER__MAX_IMAGE_BYTES)")
    try:
        return path.read_bytes()
    except OSError as e:
        raise MediaError(f"cannot read {path}: {e.strerror}") from None


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit integer or a float greyscale image as 8-bit "L": Pillow's own conversion clips at 255, so
    every 16-bit photo came out white and a float one black. Integers scale by their format's range (16 bits when
    the values fit, else the image's own maximum), floats in [0, 1] by 255, other floats by their range."""
    a = np.asarray(im, dtype=np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode == "F" and lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    elif im.mode != "F" and (im.mode.startswith("I;16") or (lo >= 0 and hi <= 65535)):
        lo, hi = 0.0, 65535.0
    scaled = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8), "L")


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _eight_bit(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")


def scaled_pixels(w: int, h: int, side: int = MODEL_SIDE) -> int:
    """Pixels of a ``w`` x ``h`` picture once its short side is scaled to ``side`` (what the preprocessing's resize
    allocates before its centre crop)."""
    short, long = sorted((max(1, w), max(1, h)))
    return side * -(-side * long // short)


def check_aspect(w: int, h: int) -> None:
    """Refuse a picture too thin to preprocess in bounded memory (:data:`MAX_ASPECT`)."""
    if w > 0 and h > 0 and max(w, h) > MAX_ASPECT * min(w, h):
        raise MediaError(f"extreme aspect ratio {w}x{h} (a side over {MAX_ASPECT} times the other): scaling it to the "
                         f"model's input would take {scaled_pixels(w, h):,} pixels")


def _check_size(w: int, h: int, limits: MediaLimits) -> None:
    if w <= 0 or h <= 0:
        raise MediaError(f"invalid dimensions {w}x{h}")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise MediaError(f"gigantic dimensions {w}x{h} (a side over {MAX_SIDE} pixels)")
    if w * h > limits.max_pixels:
        raise MediaError(f"decompression bomb guard: {w}x{h} = {w * h} pixels > {limits.max_pixels} "
                         "(RECSYS_ENCODER__MAX_IMAGE_PIXELS)")
    check_aspect(w, h)


READABLE = "BMP, GIF, JPEG, PNG, TIFF, WebP"
_FOREIGN = ((b"ftypheic", "HEIC"), (b"ftypheix", "HEIC"), (b"ftypheim", "HEIC"), (b"ftypheis", "HEIC"),
            (b"ftyphevc", "HEIC"), (b"ftypmif1", "HEIF"), (b"ftypmsf1", "HEIF"), (b"ftypavif", "AVIF"),
            (b"ftypavis", "AVIF"))
_VIDEO_BRANDS = (b"ftypisom", b"ftypiso2", b"ftypmp41", b"ftypmp42", b"ftypavc1", b"ftypM4V ", b"ftypqt  ",
                 b"ftyp3gp", b"ftypdash")


def not_readable(fmt: str) -> str:
    return f"not an image recsys can read ({fmt}): convert to JPEG/PNG/WebP; readable: {READABLE}"


def _unrecognised(data: bytes) -> str:
    """Why data Pillow does not recognise is refused, naming the format when it is a common one."""
    head = data[4:12]
    for sig, fmt in _FOREIGN:
        if head.startswith(sig):
            return not_readable(fmt)
    if head.startswith(_VIDEO_BRANDS) or data[:4] == b"\x1aE\xdf\xa3" or (data[:4] == b"RIFF" and data[8:11] == b"AVI"):
        return "a video file in the image column: put it in `video`"
    text = data[:1024].lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return not_readable("SVG")
    return "not an image (unrecognised data)"


def _open(data: bytes, limits: MediaLimits) -> Image.Image:
    """Image.open with Pillow's own pixel check raised to at least ``limits.max_pixels``
    (RECSYS_ENCODER__MAX_IMAGE_PIXELS), which :func:`_check_size` applies before any decoding: the setting governs
    above Pillow's default too. Only ever raised (the process's other readers keep at least Pillow's bound)."""
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < limits.max_pixels:
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise MediaError(_unrecognised(data)) from None


def _bomb(limits: MediaLimits) -> MediaError:
    return MediaError(f"decompression bomb guard: more than {limits.max_pixels} pixels "
                      "(RECSYS_ENCODER__MAX_IMAGE_PIXELS)")


def upright(im: Image.Image) -> Image.Image:
    """The picture as viewers show it: its EXIF orientation (phone photos are stored sideways) applied. One without
    an orientation tag is returned as it is, so its pixels (and vectors) do not change."""
    try:
        orientation = im.getexif().get(0x0112)
    except Exception:  # a damaged EXIF block: the pixels as stored
        return im
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(im)
    return im


def decode_image_bytes(data: bytes, limits: MediaLimits, *, frames: int = 1) -> list[Image.Image]:
    """RGB frames of an image (several, evenly spaced, for an animated one when ``frames`` > 1), upright."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = _open(data, limits)
        except MediaError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb(limits) from None
        except Exception as e:
            if "truncat" in str(e).lower():
                raise MediaError(f"truncated or corrupt image ({e})") from None
            raise MediaError(f"not an image ({type(e).__name__}: {e})") from None
        if im.format not in IMAGE_FORMATS:
            raise MediaError(not_readable(str(im.format)))
        _check_size(im.width, im.height, limits)
        n = int(getattr(im, "n_frames", 1) or 1)
        picks = sorted({round(i * (n - 1) / max(frames - 1, 1)) for i in range(frames)}) if n > 1 else [0]
        out = []
        try:
            for i in picks:
                im.seek(i)
                im.load()
                out.append(_to_rgb(upright(im)))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb(limits) from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise MediaError(f"truncated or corrupt image ({e})") from None
        return out


MAX_VIDEO_DECODE = 20_000
"""Frames of a video decoded at most (11 minutes at 30 fps): the picks are spread over these."""


VIDEO_FRAME_SHORT = 2 * MODEL_SIDE
"""Video frames are scaled as they are decoded so their short side is at most this (and their long side at most
four times it): a 4K frame is kept as about 1 MB, not 25 MB, and the towers' resize to 224 sees the same picture."""


def frame_size(w: int, h: int) -> tuple[int, int]:
    """The size a ``w`` x ``h`` video frame is kept at (:data:`VIDEO_FRAME_SHORT`); small frames keep theirs."""
    s = min(1.0, VIDEO_FRAME_SHORT / max(1, min(w, h)), 4 * VIDEO_FRAME_SHORT / max(1, w, h))
    return (w, h) if s >= 1.0 else (max(1, round(w * s)), max(1, round(h * s)))


def decode_video(data: bytes, limits: MediaLimits) -> list[Image.Image]:
    """``limits.video_frames`` evenly spaced RGB frames of a video file (needs PyAV). Frames are decoded one at a
    time, each scaled down (:func:`frame_size`) as it becomes a picture, and at most ``8 * video_frames`` are kept
    (every other one dropped when full): a few MB of file can hold thousands of frames, which decoded whole took
    gigabytes."""
    try:
        import av
    except ImportError:
        raise MediaError("video decoding needs the package av (pip install av)") from None
    k = max(1, limits.video_frames)
    kept: list[tuple[int, Any]] = []
    stride, n = 1, -1
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise MediaError("no video frames (the file has no video stream: audio only?)")
            stream = container.streams.video[0]
            if stream.codec_context.width and stream.codec_context.height:
                _check_size(stream.codec_context.width, stream.codec_context.height, limits)
            for n, frame in enumerate(container.decode(stream)):
                if n >= MAX_VIDEO_DECODE:
                    break
                if n % stride == 0:
                    _check_size(frame.width, frame.height, limits)
                    w, h = frame_size(frame.width, frame.height)
                    kept.append((n, frame.to_image(width=w, height=h)))
                    if len(kept) > 8 * k:
                        stride *= 2
                        kept = [(i, f) for i, f in kept if i % stride == 0]
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"unreadable video ({type(e).__name__}: {e})") from None
    if not kept:
        raise MediaError("no video frames")
    last = n if n < MAX_VIDEO_DECODE else n - 1
    at = np.array([i for i, _ in kept])  # the kept frame nearest each evenly spaced target, each once
    picks = sorted({int(np.abs(at - t).argmin()) for t in np.linspace(0, last, k)})
    return [kept[i][1].convert("RGB") for i in picks]


def load_media(uri: str, kind: str, limits: MediaLimits) -> list[Image.Image]:
    """Frames of one medium (one for a still image). Raises :class:`MediaError` with the reason."""
    data = _read_bytes(uri, limits)
    if kind == "video":
        if Path(urlparse(uri).path).suffix.lower() in VIDEO_SUFFIXES or not _looks_like_image(data):
            return decode_video(data, limits)
        return decode_image_bytes(data, limits, frames=limits.video_frames)
    return decode_image_bytes(data, limits)


def _looks_like_image(data: bytes) -> bool:
    return data[:3] == b"GIF" or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def load_image_file(uri: str, limits: MediaLimits | None = None) -> Image.Image:
    """One still image, for queries (search by image). Raises :class:`~recsys.errors.BadMedia` with the reason."""
    from recsys.errors import BadMedia

    try:
        return load_media(uri, "image", limits or MediaLimits())[0]
    except MediaError as e:
        raise BadMedia(f"{uri}: {e}") from None


def image_from_bytes(data: bytes, limits: MediaLimits | None = None) -> Image.Image:
    """An uploaded image, for queries. Raises :class:`~recsys.errors.BadMedia` with the reason."""
    from recsys.errors import BadMedia

    lim = limits or MediaLimits()
    if len(data) > lim.max_bytes:
        raise BadMedia(f"image too large: {len(data)} bytes > {lim.max_bytes}")
    try:
        return decode_image_bytes(data, lim)[0]
    except MediaError as e:
        raise BadMedia(str(e)) from None
