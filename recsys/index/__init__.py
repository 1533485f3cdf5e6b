"""FAISS index generations and content retrieval (DESIGN.md decisions 6 and 7).

Build a generation (:func:`build_generation`, :func:`build_delta_generation`, or :func:`build_from_catalog` from the
store), open it (:class:`IndexReader`, or :class:`IndexHandle` to follow the ``current`` pointer), search it by
vector with an :class:`ItemFilter` and exclusions, find items similar to one, or "more like these" from weighted
examples (:func:`more_like_these`). Generations are immutable directories switched atomically; see
:mod:`recsys.index.layout`. Item ids in, item ids out: FAISS row positions never leave this package.
"""

from __future__ import annotations

from recsys.index.build import build_delta_generation, build_generation
from recsys.index.catalog import build_from_catalog, index_root
from recsys.index.checkup import disk_bytes
from recsys.index.examples import example_query, more_like_these
from recsys.index.factory import choose_factory
from recsys.index.handle import IndexHandle
from recsys.index.layout import (
    Manifest,
    current_id,
    generation_path,
    incomplete_generations,
    list_generations,
    prune,
    publish,
    rollback,
    set_current,
    verify,
)
from recsys.index.meta import ItemFilter, ItemMeta, parse_filters
from recsys.index.reader import Hits, IndexReader

__all__ = [
    "Hits",
    "IndexHandle",
    "IndexReader",
    "ItemFilter",
    "ItemMeta",
    "Manifest",
    "build_delta_generation",
    "build_from_catalog",
    "build_generation",
    "choose_factory",
    "current_id",
    "disk_bytes",
    "example_query",
    "generation_path",
    "incomplete_generations",
    "index_root",
    "list_generations",
    "more_like_these",
    "parse_filters",
    "prune",
    "publish",
    "rollback",
    "set_current",
    "verify",
]
