"""The Encoder interface every preset implements, and small array helpers.

An encoder maps texts and images into one shared space: ``encode_texts`` and ``encode_images`` return L2-normalised
float32 arrays of shape (n, dim). ``id`` names the exact weights (preset, towers and fitted heads version), so cached
vectors and index generations can be checked against it.
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np
from PIL import Image

Modality = Literal["fused", "text", "image"]
"""The item vectors an index serves: each tower's, and their weighted fusion (``encoder.modality_weights``)."""
MODALITIES: tuple[str, ...] = get_args(Modality)


@runtime_checkable
class Encoder(Protocol):
    """Text and image encoder into one space (DESIGN.md decision 3)."""

    id: str
    """Identifies the weights: equal ids give equal vectors for equal inputs."""
    dim: int

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised."""
        ...

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """(len(images), dim) float32, rows L2-normalised."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)
