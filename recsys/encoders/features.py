"""Tower features of media and texts, computed once and cached.

Images are decoded and preprocessed in DataLoader workers (``settings.encoder.num_workers``) so the model is the
bottleneck; a medium that fails to decode yields its reason instead of features and never stops the batch. Video
frames (and animated image frames) are embedded by the image tower and their features averaged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from recsys.encoders.cache import VectorCache, digest, media_identity
from recsys.encoders.media import MediaError, MediaLimits, load_media
from recsys.encoders.towers import Towers

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class MediaJob:
    uri: str
    """As recorded (media status and cache keys go by it)."""
    kind: str = "image"
    path: str = ""
    """The file to read when not the recorded one (:class:`~recsys.encoders.media.MediaFinder`: a moved home)."""

    @property
    def key(self) -> str:
        return digest(self.kind, media_identity(self.uri, self.path or None))

    def cache_key(self, limits: MediaLimits) -> str:
        """The key its features are cached under: a video's also names how many frames were averaged, so changing
        ``encoder.video_frames`` computes them again instead of serving the old frames' mean."""
        return self.key if self.kind != "video" else digest(self.key, media_tag(self.kind, limits))


def media_tag(kind: str, limits: MediaLimits) -> str:
    """How a medium of ``kind`` is decoded under ``limits``, for cache keys: a video by its frame count."""
    return f"video/{limits.video_frames}" if kind == "video" else kind


class _MediaDataset(Dataset[tuple[int, torch.Tensor | None, str | None]]):
    def __init__(self, jobs: Sequence[MediaJob], preprocess: Callable[[Image.Image], torch.Tensor],
                 limits: MediaLimits) -> None:
        self.jobs, self.preprocess, self.limits = jobs, preprocess, limits

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        job = self.jobs[i]
        try:
            frames = load_media(job.path or job.uri, job.kind, self.limits)
            return i, torch.stack([self.preprocess(f) for f in frames]), None
        except MediaError as e:
            return i, None, str(e)
        except Exception as e:  # a decoder bug must not stop the batch either
            return i, None, f"cannot decode ({type(e).__name__}: {e})"


def _identity(batch: list[Any]) -> list[Any]:
    return batch


def media_loader(jobs: Sequence[MediaJob], towers: Towers, limits: MediaLimits, *, batch_size: int,
                 num_workers: int) -> DataLoader[Any]:
    workers = max(0, num_workers)
    return DataLoader(
        _MediaDataset(jobs, towers.preprocess, limits), batch_size=batch_size, num_workers=workers,
        collate_fn=_identity, prefetch_factor=4 if workers else None, pin_memory=towers.device.type == "cuda",
    )


def image_features(towers: Towers, jobs: Sequence[MediaJob], cache: VectorCache | None, limits: MediaLimits, *,
                   batch_size: int = 32, num_workers: int = 1,
                   progress: Progress | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Features of each medium by ``job.key`` (cached ones read back), and the reason for each one that failed."""
    unique = list({j.key: j for j in jobs}.values())
    cached = cache.get_many(j.cache_key(limits) for j in unique) if cache is not None else {}
    found = {j.key: cached[j.cache_key(limits)] for j in unique if j.cache_key(limits) in cached}
    todo = [j for j in unique if j.key not in found]
    errors: dict[str, str] = {}
    done = len(unique) - len(todo)
    if progress:
        progress(done, len(unique))
    if todo:
        log.info("image features: %d cached, %d to compute", done, len(todo))
        for batch in media_loader(todo, towers, limits, batch_size=batch_size, num_workers=num_workers):
            ok = [(i, t) for i, t, _ in batch if t is not None]
            for i, _, reason in batch:
                if reason is not None:
                    errors[todo[i].key] = reason
                    log.warning("media %s: %s", todo[i].uri, reason)
            if ok:
                feats = towers.image_features(torch.cat([t for _, t in ok])).numpy()
                new, at = {}, 0
                for i, t in ok:
                    new[todo[i].key] = feats[at : at + len(t)].mean(0)
                    at += len(t)
                found.update(new)
                if cache is not None:
                    cache.put_many({todo[i].cache_key(limits): new[todo[i].key] for i, _ in ok})
            done += len(batch)
            if progress:
                progress(done, len(unique))
    return found, errors


def text_features(towers: Towers, texts: Sequence[str], cache: VectorCache | None, *,
                  batch_size: int = 128, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Features of each distinct text, by the text itself (cached by digest); ``progress(done, total)`` after each
    batch of the texts not cached (H&M's 50,000 field texts take a minute or more on 2 cores)."""
    unique = list(dict.fromkeys(texts))
    keys = {t: digest(t) for t in unique}
    got = cache.get_many(keys.values()) if cache is not None else {}
    out = {t: got[k] for t, k in keys.items() if k in got}
    todo = sorted((t for t in unique if t not in out), key=len)  # similar lengths pad less
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        feats = towers.text_features(chunk).numpy()
        new = {keys[t]: f for t, f in zip(chunk, feats, strict=True)}
        out.update(dict(zip(chunk, feats, strict=True)))
        if cache is not None:
            cache.put_many(new)
        if progress is not None:
            progress(min(i + batch_size, len(todo)), len(todo))
    return out


def feature_caches(settings: Any, towers: Towers) -> tuple[VectorCache, VectorCache]:
    """(image, text) tower-feature caches of these towers."""
    return (VectorCache.open(settings, "features", towers.id, "image"),
            VectorCache.open(settings, "features", towers.id, "text"))
