"""Frozen towers: what an encoder computes before its fitted projection heads.

A :class:`Towers` object turns a preprocessed image batch into image *features* and a list of strings into text
features. The projection heads (:mod:`recsys.encoders.heads`) map both into the shared space. Keeping the two apart
lets ``encoder fit`` cache tower features once and fit the heads in seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from PIL import Image

log = logging.getLogger(__name__)


class Towers(Protocol):
    id: str
    """Identifies the tower weights and feature layout (part of every cache key)."""
    image_dim: int
    text_dim: int
    device: torch.device
    dtype: torch.dtype
    preprocess: Callable[[Image.Image], torch.Tensor]
    """Picklable: runs in DataLoader workers. PIL RGB image -> (3, H, W) float32 tensor."""

    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) preprocessed -> (n, image_dim) float32 on the CPU."""
        ...

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """-> (n, text_dim) float32 on the CPU."""
        ...


def pick_device(setting: str) -> tuple[torch.device, torch.dtype]:
    """``auto`` -> CUDA with fp16 when present, else CPU float32; ``cpu``/``cuda``/``cuda:N`` as given."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(setting)
    return dev, (torch.float16 if dev.type == "cuda" else torch.float32)


@contextmanager
def offline_hub() -> Any:
    """No network inside: Hugging Face / transformers read local files only."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def quiet_transformers() -> None:
    """transformers prints load reports and progress bars; library code keeps stdout clean."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - transformers always present with open_clip's HF towers
        pass
