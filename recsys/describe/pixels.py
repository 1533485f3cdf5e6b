"""Garment colour from the photo's pixels: CIELAB statistics of the foreground, for the colour probe.

The lite towers' colour block (:class:`recsys.encoders.lite.ColourStats`) is a coarse RGB histogram at 28 x 28:
neighbouring shades that H&M tells apart (white / off white, black / dark blue / dark grey, beige / light beige)
fall into the same cells. Here each image is read again at 56 x 84 and described in CIELAB, where lightness and the
two hue axes are apart and distances are roughly perceptual: the foreground is the pixels unlike the photo's
border (the studio background), weighted towards the centre, and the features are a soft L x a x b histogram of it,
its mean, spread and lightness percentiles, the background's own colour (a white garment is told from an off white
one against it) and the foreground's share of the frame. Decoding is cheap next to the image tower (about 2 ms an
image on one core), so nothing is cached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from recsys.encoders.media import MediaError, MediaLimits, load_media
from recsys.encoders.text import ItemRecord

SIZE = (56, 84)
"""Width x height the photo is read at (H&M's are 2:3)."""
BINS = (8, 9, 9)
"""Histogram cells along L (0..100), a (-40..40) and b (-40..60)."""
LOW = np.array([0.0, -40.0, -40.0])
HIGH = np.array([100.0, 40.0, 60.0])
FOREGROUND_DELTA = 6.0
"""CIELAB distance from the background above which a pixel counts as garment (soft, 1.5 wide)."""
DIM = int(np.prod(BINS)) + 3 + 3 + 5 + 3 + 3 + 1


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in 0..1 -> CIELAB (D65)."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _soft_histogram(lab: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Trilinear histogram of (p, 3) Lab pixels with weights (p,) summing to 1."""
    bins = np.array(BINS)
    pos = np.clip((lab - LOW) / (HIGH - LOW), 0, 1) * (bins - 1)
    lo = np.minimum(np.floor(pos), bins - 2).astype(np.int64)
    frac = pos - lo
    hist = np.zeros(int(np.prod(bins)))
    for corner in np.ndindex(2, 2, 2):
        c = np.array(corner)
        idx = lo + c
        weight = np.where(c.astype(bool), frac, 1 - frac).prod(-1) * w
        hist += np.bincount((idx[:, 0] * bins[1] + idx[:, 1]) * bins[2] + idx[:, 2], weight, len(hist))
    return hist


def pixel_colour(image: Image.Image) -> np.ndarray:
    """(DIM,) float32 colour statistics of one photo's foreground (see the module docstring)."""
    rgb = np.asarray(image.convert("RGB").resize(SIZE, Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    lab = srgb_to_lab(rgb)
    h, w = lab.shape[:2]
    border = np.concatenate([lab[:2].reshape(-1, 3), lab[-2:].reshape(-1, 3), lab[:, :2].reshape(-1, 3),
                             lab[:, -2:].reshape(-1, 3)])
    bg = np.median(border, 0)
    dist = np.linalg.norm(lab - bg, axis=-1)
    fg = 1.0 / (1.0 + np.exp(-(dist - FOREGROUND_DELTA) / 1.5))
    share = float(fg.mean())
    yy, xx = np.mgrid[0:h, 0:w]
    centre = np.exp(-(((yy - h / 2) / (0.45 * h)) ** 2 + ((xx - w / 2) / (0.45 * w)) ** 2))
    # Nearly no foreground (a garment the background's colour, or no plain background): the centre of the frame.
    weight = (fg if share >= 0.03 else np.ones_like(fg)) * centre
    px, wt = lab.reshape(-1, 3), weight.ravel() / max(float(weight.sum()), 1e-9)
    mean = wt @ px
    std = np.sqrt(np.maximum(wt @ (px - mean) ** 2, 0))
    order = np.argsort(px[:, 0])
    cum = np.cumsum(wt[order])
    pct = px[order, 0][np.minimum(np.searchsorted(cum, [0.1, 0.25, 0.5, 0.75, 0.9]), len(cum) - 1)]
    chroma = np.hypot(px[:, 1], px[:, 2])
    hue = np.array([wt @ chroma, wt @ (px[:, 1] / np.maximum(chroma, 1.0)), wt @ (px[:, 2] / np.maximum(chroma, 1.0))])
    return np.concatenate([_soft_histogram(px, wt), mean, std, pct, hue, bg, [share]]).astype(np.float32)


def _item_pixels(media: Sequence[tuple[str, str]], limits: MediaLimits,
                 find: Callable[[str], str] = str) -> np.ndarray:
    """The mean statistics of an item's decodable still images (zeros with none; videos are left out); ``find``
    maps a recorded path to the file to read (:class:`~recsys.encoders.media.MediaFinder`: a moved home)."""
    found = []
    for kind, uri in media:
        if kind != "image":
            continue
        try:
            found.append(pixel_colour(load_media(find(uri), kind, limits)[0]))
        except MediaError:
            continue
    return np.mean(found, axis=0) if found else np.zeros(DIM, np.float32)


def pixel_features(items: Sequence[ItemRecord], limits: MediaLimits, workers: int = 4,
                   find: Callable[[str], str] = str) -> np.ndarray:
    """(n, DIM) float32: per item the mean of its photos' statistics, zeros for an item without a decodable one.
    Threads: decoding and resizing release the GIL."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = list(pool.map(lambda it: _item_pixels(it.media, limits, find), items, chunksize=64))
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, DIM), np.float32)
