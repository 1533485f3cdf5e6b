"""Tiny generated media, catalogues and a tiny open_clip checkpoint for the encoder tests."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from recsys.config import Settings
from recsys.store import Item, ItemMedia, Store

COLOURS = {"red": (220, 30, 30), "blue": (30, 50, 210), "green": (30, 180, 60), "black": (15, 15, 15),
           "yellow": (240, 220, 40), "white": (250, 250, 250)}

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def garment(path: Path, colour: tuple[int, int, int], shape: str = "box", fmt: str = "JPEG") -> Path:
    """A product-photo-like image: a coloured shape on a light grey background."""
    im = Image.new("RGB", (96, 144), (235, 235, 235))
    px = im.load()
    assert px is not None
    for y in range(20, 124):
        for x in range(16, 80):
            inside = shape == "box" or (shape == "dress" and abs(x - 48) < 10 + (y - 20) // 4)
            if inside:
                px[x, y] = colour
    im.save(path, fmt)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries almost no data (a decompression-bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def broken_media(d: Path) -> dict[str, Path]:
    """One file per failure kind."""
    d.mkdir(parents=True, exist_ok=True)
    good = garment(d / "good.jpg", COLOURS["red"])
    truncated = d / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (d / "not_image.jpg").write_text("this is not an image\n" * 10)
    (d / "bomb.png").write_bytes(png_header_only(16000, 16000))
    (d / "too_many_pixels.png").write_bytes(png_header_only(8000, 8000))
    (d / "gigantic.png").write_bytes(png_header_only(30000, 4))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PPM")
    (d / "odd_format.ppm").write_bytes(buf.getvalue())
    return {
        "truncated": truncated, "not_image": d / "not_image.jpg", "bomb": d / "bomb.png",
        "too_many_pixels": d / "too_many_pixels.png", "gigantic": d / "gigantic.png",
        "unsupported": d / "odd_format.ppm", "missing": d / "does_not_exist.jpg",
    }


def animated_gif(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    frames = [Image.new("RGB", (48, 48), c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def add_item(store: Store, item_id: str, title: str, *, category: str | None = None, description: str = "",
             attributes: dict | None = None, media: list[tuple[str, Path]] | None = None) -> None:
    with store.session() as s:
        it = Item(external_id=item_id, title=title, category=category, description=description,
                  attributes=attributes or {}, content_hash=f"h-{item_id}-{title}")
        s.add(it)
        s.flush()
        for pos, (kind, path) in enumerate(media or []):
            s.add(ItemMedia(item_id=it.id, kind=kind, uri=str(path), position=pos))


def colour_catalogue(store: Store, d: Path, per_colour: int = 4) -> list[str]:
    """Items whose colour is both in the photo and in ``attributes.colour``: a known answer for fitting."""
    ids = []
    d.mkdir(parents=True, exist_ok=True)
    for name, rgb in COLOURS.items():
        for i in range(per_colour):
            shape = "dress" if i % 2 else "box"
            kind = "Dress" if i % 2 else "Box"
            path = garment(d / f"{name}{i}.jpg", tuple(max(0, min(255, c + 6 * i)) for c in rgb), shape)  # type: ignore[arg-type]
            item_id = f"{name}-{i}"
            add_item(store, item_id, f"{name} {kind.lower()} {i}", category=kind, attributes={"colour": name.title()},
                     description=f"A {name} {kind.lower()}.", media=[("image", path)])
            ids.append(item_id)
    return ids


def tiny_open_clip_preset(settings: Settings, d: Path) -> str:
    """Save a tiny randomly initialised open_clip model as a local checkpoint, and a preset pointing at it."""
    import torch
    from open_clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(**TINY_CFG)  # type: ignore[arg-type]
    d.mkdir(parents=True, exist_ok=True)
    ckpt = d / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    presets = settings.home / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    (presets / "tiny.json").write_text(json.dumps({
        "name": "tiny-local", "kind": "open_clip", "description": "test", "arch": "tiny",
        "checkpoint": str(ckpt), "model_cfg": TINY_CFG, "head": "residual",
    }))
    return "tiny-local"


def tiny_video(path: Path) -> Path:
    """A 4-frame 32x32 MPEG-4 clip (skips the test where PyAV is missing)."""
    av = pytest.importorskip("av")
    import numpy as np

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 60 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
