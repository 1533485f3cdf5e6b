"""Sharded IVF indexes for catalogues beyond one machine's memory (DESIGN.md section 6).

A catalogue too large to hold is built in a stream. One quantizer (coarse centroids, PQ codebooks, any rotation) is
trained once on a sample (:func:`train_empty`); each chunk of vectors then becomes a shard, a copy of that empty
trained index holding only the chunk, with the chunk's global row numbers as ids (:func:`write_shard`). Only one
chunk is in memory at a time, and shards can be built on different machines.

Because every shard shares the trained quantizer, their inverted lists line up list by list. They are used either

- merged into one index whose lists live in a file next to it and are memory-mapped (:func:`merge_on_disk`, faiss
  ``OnDiskInvertedLists``): RAM holds the quantizer, the page cache holds the lists queries touch; or
- searched side by side (:func:`open_shards`, a ``faiss.IndexShards`` merging each shard's top-k by score), e.g.
  one shard per replica or per disk.

Both give exactly the results of one index filled with all the vectors. Needs an IVF index with plain codes
(``IVF...,PQ...``, ``IVF...,SQ8``, ``IVF...,Flat``); fast-scan (``...fs``) lists are laid out in blocks that cannot be
merged on disk.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.errors import ValidationFailed
from recsys.index.factory import faiss_module, new_index, train_index

if TYPE_CHECKING:
    from recsys.config import IndexSettings

log = logging.getLogger(__name__)

MERGED = "merged.faiss"
LISTS = "merged.ivfdata"


def train_empty(sample: np.ndarray, factory: str, settings: IndexSettings) -> Any:
    """An empty IVF index trained on ``sample`` (m, d) float32: the quantizer every shard shares."""
    faiss = faiss_module()

    index = new_index(sample.shape[1], factory, settings)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or isinstance(ivf, faiss.IndexIVFFastScan):
        raise ValidationFailed(f"sharded indexes need an IVF factory with plain codes (e.g. IVF4096,PQ64), "
                               f"not {factory!r}")
    train_index(index, sample, factory)
    return index


def write_shard(trained: Any, vectors: np.ndarray, first_row: int, path: Path) -> Path:
    """Write the shard holding ``vectors`` (m, d) float32, whose ids are rows ``first_row..first_row+m-1``."""
    faiss = faiss_module()

    if vectors.ndim != 2 or vectors.shape[1] != trained.d:
        raise ValidationFailed(f"shard vectors must be (n, {trained.d}), got {vectors.shape}")
    if trained.ntotal:
        raise ValidationFailed("write_shard needs the empty trained index (train_empty), not a filled one")
    shard = faiss.clone_index(trained)
    rows = np.arange(first_row, first_row + len(vectors), dtype=np.int64)
    for s in range(0, len(vectors), 65536):
        shard.add_with_ids(np.ascontiguousarray(vectors[s:s + 65536], dtype=np.float32), rows[s:s + 65536])
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(shard, str(path))
    log.info("shard %s: %d vectors from row %d", path.name, len(vectors), first_row)
    return path


def merge_on_disk(trained: Any, shards: list[Path], directory: Path) -> Path:
    """Merge ``shards`` into ``directory``/merged.faiss, its lists in merged.ivfdata beside it (read with
    :func:`open_merged`; the two files move together). Shard lists are memory-mapped while merging, not loaded."""
    faiss = faiss_module()
    from faiss.contrib.ondisk import merge_ondisk

    if not shards:
        raise ValidationFailed("no shards to merge")
    directory.mkdir(parents=True, exist_ok=True)
    index = faiss.clone_index(trained)
    merge_ondisk(index, [str(p) for p in shards], str(directory / LISTS))
    path = directory / MERGED
    faiss.write_index(index, str(path))
    return path


def open_merged(path: Path) -> Any:
    """The index written by :func:`merge_on_disk`; its lists stay on disk (memory-mapped) wherever the pair moved."""
    faiss = faiss_module()

    if not (path.parent / LISTS).exists():
        raise ValidationFailed(f"{path}: its inverted lists file {LISTS} is missing beside it")
    return faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)


def open_shards(shards: list[Path], *, mmap: bool = True) -> Any:
    """One searchable index over ``shards`` (each searched, the top-k merged by score; ids are global rows)."""
    faiss = faiss_module()

    if not shards:
        raise ValidationFailed("no shards to open")
    parts = [faiss.read_index(str(p), faiss.IO_FLAG_MMAP if mmap else 0) for p in shards]
    group = faiss.IndexShards(parts[0].d, False, False)  # not threaded (FAISS parallelises inside), ids kept
    for p in parts:
        group.add_shard(p)  # faiss's wrapper keeps a reference: shards live as long as the group
    return group
