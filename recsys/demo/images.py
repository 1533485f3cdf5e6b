"""Render a demo item: a category silhouette filled with the item's colour and pattern, on a light background.

Shapes are drawn in a 0..100 design space and mapped onto the canvas with a small per-item scale and offset, so items of
one category look alike without being pixel-identical.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from recsys.demo.catalog import COLOURS

SIZE = 128
Point = tuple[float, float]
Map = Callable[[float, float], Point]
Box = tuple[float, float, float, float]


def _box(m: Map, x0: float, y0: float, x1: float, y1: float) -> Box:
    a, b = m(x0, y0), m(x1, y1)
    return (a[0], a[1], b[0], b[1])


def _poly(d: ImageDraw.ImageDraw, m: Map, pts: list[Point], fill: int | tuple[int, int, int]) -> None:
    d.polygon([m(x, y) for x, y in pts], fill=fill)


def _shape(cat: str, d: ImageDraw.ImageDraw, m: Map, k: float) -> None:
    """Draw the category silhouette (fill 255) on the mask."""
    w = max(2, round(7 * k))
    if cat == "t-shirt":
        _poly(d, m, [(30, 20), (42, 14), (50, 22), (58, 14), (70, 20), (89, 36), (79, 47), (70, 41), (70, 88),
                     (30, 88), (30, 41), (21, 47), (11, 36)], 255)
    elif cat == "dress":
        _poly(d, m, [(39, 10), (43, 10), (46, 24), (54, 24), (57, 10), (61, 10), (63, 32), (58, 43), (82, 90),
                     (18, 90), (42, 43), (37, 32)], 255)
    elif cat == "trousers":
        _poly(d, m, [(30, 10), (70, 10), (75, 90), (56, 90), (50, 36), (44, 90), (25, 90)], 255)
    elif cat == "socks":
        _poly(d, m, [(38, 10), (62, 10), (62, 58), (84, 70), (86, 84), (76, 92), (52, 90), (38, 72)], 255)
    elif cat == "hat":
        d.chord(_box(m, 28, 22, 72, 100), 180, 360, fill=255)
        d.rectangle(_box(m, 28, 58, 72, 70), fill=255)
        d.ellipse(_box(m, 6, 62, 94, 82), fill=255)
    elif cat == "sneakers":
        _poly(d, m, [(8, 56), (38, 54), (54, 38), (70, 38), (74, 50), (92, 62), (94, 74), (8, 74)], 255)
    elif cat == "bag":
        d.ellipse(_box(m, 32, 14, 68, 60), outline=255, width=w)
        d.rounded_rectangle(_box(m, 16, 40, 84, 90), radius=6 * k, fill=255)
    elif cat == "umbrella":
        d.pieslice(_box(m, 6, 14, 94, 90), 180, 360, fill=255)
    elif cat == "mug":
        d.ellipse(_box(m, 56, 38, 88, 74), outline=255, width=w)
        d.rounded_rectangle(_box(m, 20, 26, 68, 88), radius=5 * k, fill=255)
    elif cat == "lamp":
        _poly(d, m, [(34, 10), (66, 10), (82, 46), (18, 46)], 255)
    elif cat == "vase":
        d.ellipse(_box(m, 22, 40, 78, 94), fill=255)
        d.rectangle(_box(m, 40, 16, 60, 52), fill=255)
        d.rectangle(_box(m, 35, 10, 65, 18), fill=255)
    else:  # cushion and anything new: a rounded square
        d.rounded_rectangle(_box(m, 14, 18, 86, 82), radius=14 * k, fill=255)


def _details(cat: str, d: ImageDraw.ImageDraw, m: Map, k: float) -> None:
    """Parts that keep a fixed colour whatever the item colour (soles, stems, handles)."""
    dark, light = (60, 60, 66), (236, 234, 228)
    w = max(2, round(4 * k))
    if cat == "sneakers":
        d.rectangle(_box(m, 6, 74, 96, 82), fill=light, outline=dark)
    elif cat == "lamp":
        d.rectangle(_box(m, 47, 46, 53, 84), fill=dark)
        d.ellipse(_box(m, 30, 80, 70, 92), fill=dark)
    elif cat == "umbrella":
        d.line([m(50, 52), m(50, 86)], fill=dark, width=w)
        d.arc(_box(m, 42, 80, 58, 94), 0, 180, fill=dark, width=w)
    elif cat == "socks":
        d.rectangle(_box(m, 38, 10, 62, 17), fill=light)


def _ink(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (40, 40, 48) if lum > 150 else (246, 244, 238)


def _texture(pattern: str, rgb: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """The fabric: the item colour with the pattern drawn in a contrasting ink."""
    tex = Image.new("RGB", (SIZE, SIZE), rgb)
    if pattern == "solid":
        return tex
    d = ImageDraw.Draw(tex)
    ink = _ink(rgb)
    period = rng.randint(12, 18)
    phase = rng.randint(0, period - 1)
    if pattern == "stripes":
        width = max(3, period // 2 - rng.randint(0, 2))
        diagonal = rng.random() < 0.3
        for p in range(-SIZE - period + phase, 2 * SIZE, period):
            if diagonal:
                d.polygon([(p, 0), (p + width, 0), (p + width - SIZE, SIZE), (p - SIZE, SIZE)], fill=ink)
            else:
                d.rectangle((0, p, SIZE, p + width - 1), fill=ink)
    elif pattern == "dots":
        r = max(2, period // 4 + rng.randint(0, 1))
        for row, y in enumerate(range(phase - period, SIZE + period, period)):
            off = period // 2 if row % 2 else 0
            for x in range(phase - period + off, SIZE + period, period):
                d.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    elif pattern == "checks":
        half = tuple((a + b) // 2 for a, b in zip(rgb, ink, strict=True))
        mid = (half[0], half[1], half[2])
        for i, y in enumerate(range(phase - period, SIZE + period, period)):
            for j, x in enumerate(range(phase - period, SIZE + period, period)):
                if (i + j) % 2:
                    d.rectangle((x, y, x + period - 1, y + period - 1), fill=mid)
        for p in range(phase - period, SIZE + period, 2 * period):  # gingham lines
            d.rectangle((p, 0, p + 1, SIZE), fill=ink)
            d.rectangle((0, p, SIZE, p + 1), fill=ink)
    return tex


def render_item(category: str, colour: str, pattern: str, seed: int) -> Image.Image:
    """A SIZE x SIZE RGB image of one item; deterministic in its arguments."""
    rng = random.Random(seed)
    scale = rng.uniform(0.88, 1.04)
    dx, dy = rng.uniform(-4, 4), rng.uniform(-4, 4)
    k = SIZE / 100 * scale

    def m(x: float, y: float) -> Point:
        return (SIZE / 2 + dx + (x - 50) * k, SIZE / 2 + dy + (y - 50) * k)

    g = rng.randint(222, 240)
    bg = (g, g - rng.randint(0, 6), g - rng.randint(0, 10))
    img = Image.new("RGB", (SIZE, SIZE), bg)
    mask = Image.new("L", (SIZE, SIZE), 0)
    _shape(category, ImageDraw.Draw(mask), m, k)
    # an outline keeps light items visible on the light background
    edge = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(3)), mask)
    img.paste((70, 70, 78), (0, 0), edge)
    img.paste(_texture(pattern, COLOURS[colour], rng), (0, 0), mask)
    _details(category, ImageDraw.Draw(img), m, k)
    return img
