"""The ranker's view of the catalogue: item vectors and the per-item fields features need, aligned by row.

Rows are private to the ranking package; everything outside speaks item ids (DESIGN.md decision 6). The table is
rebuilt whenever item vectors change (:meth:`RankingPipeline.update_items`), which is how a new item becomes
rankable without retraining.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pandas as pd

from recsys.errors import ValidationFailed
from recsys.ranking.lexical import NameIndex

log = logging.getLogger(__name__)


class VectorsLike(Protocol):
    """What the ranker needs from item vectors (``recsys.encoders.ItemVectors`` satisfies it).

    ``fused``, ``text``, ``image``: (n, d) float32, rows L2-normalised; ``image`` rows are zero where an item has
    no image. ``text`` and ``image`` may be None when only fused vectors exist.
    """

    item_ids: list[str]
    fused: np.ndarray
    text: np.ndarray | None
    image: np.ndarray | None
    encoder_id: str


@dataclass
class SimpleVectors:
    """A plain :class:`VectorsLike`: tests and notebooks build one, and serving hands the ranker one of the served
    index's vectors."""

    item_ids: list[str]
    fused: np.ndarray
    text: np.ndarray | None = None
    image: np.ndarray | None = None
    encoder_id: str = "custom"
    tower_text: np.ndarray | None = None


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


@dataclass
class ItemTable:
    """Item vectors plus fields, one row per item; ``group`` is the variant group (e.g. product_code), -1 if none."""

    ids: list[str]
    index: dict[str, int]
    fused: np.ndarray
    text: np.ndarray | None
    image: np.ndarray | None
    price: np.ndarray
    """float64, NaN where unknown."""
    category: np.ndarray
    """int codes, -1 where unknown."""
    group: np.ndarray
    in_stock: np.ndarray
    """bool (True where unknown)."""
    available: np.ndarray
    """bool: not hidden and not deleted; other items are never returned."""
    encoder_id: str
    category_names: list[str] | None = None
    attr_keys: list[str] = field(default_factory=list)
    """Categorical item attributes the features compare with the history (see :func:`pick_attribute_keys`)."""
    attrs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    """(n, len(attr_keys)) int codes, -1 where missing."""
    content: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    """(n, d') unit rows: item-to-item likeness of the descriptions (the text tower's own space when the vectors
    carry it, else the fused vectors)."""
    behaviour: np.ndarray | None = None
    """(n, d'') unit rows in the co-purchase space (:mod:`recsys.ranking.cobuy`), None when the ranker has none."""
    names: NameIndex | None = None
    """The items' name words (:mod:`recsys.ranking.lexical`), None when no item has a title."""

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.fused.shape[1])

    @classmethod
    def build(cls, vectors: VectorsLike, items: pd.DataFrame | None = None,
              variant_attribute: str | None = "product_code", attr_keys: list[str] | None = None,
              names: bool = True) -> ItemTable:
        """The table for these vectors; ``attr_keys`` None picks them from the items (a trained ranker passes its
        own); ``names`` False skips the name-word index (a ranker without the ``hybrid`` source)."""
        ids = [str(i) for i in vectors.item_ids]
        n = len(ids)
        fused = _normalise(vectors.fused)
        if fused.ndim != 2 or fused.shape[0] != n:
            raise ValidationFailed(f"item vectors: expected ({n}, d) fused vectors, got shape {fused.shape}")
        raw_text, raw_image = getattr(vectors, "text", None), getattr(vectors, "image", None)
        text = _normalise(raw_text) if raw_text is not None else None
        image = _normalise(raw_image) if raw_image is not None else None
        index = {i: r for r, i in enumerate(ids)}
        price = np.full(n, np.nan)
        category = np.full(n, -1, dtype=np.int64)
        group = np.full(n, -1, dtype=np.int64)
        cat_names: list[str] | None = None
        available = np.ones(n, dtype=bool)
        in_stock = np.ones(n, dtype=bool)
        if items is not None and len(items):
            rows = np.array([index.get(str(i), -1) for i in items["item_id"]])
            ok = rows >= 0
            sub = items[ok]
            rows = rows[ok]
            if "price" in sub:
                price[rows] = pd.to_numeric(sub["price"], errors="coerce").to_numpy(dtype=float)
            if "category" in sub:
                codes, uniq = pd.factorize(sub["category"].astype("string"), use_na_sentinel=True)
                category[rows] = codes
                cat_names = [str(x) for x in uniq]
            if "in_stock" in sub:
                in_stock[rows] = sub["in_stock"].fillna(True).astype(bool).to_numpy()
            for col in ("hidden", "deleted"):
                if col in sub:
                    available[rows] &= ~sub[col].fillna(False).astype(bool).to_numpy()
            if variant_attribute and "attributes" in sub:
                gkeys = [_attr(a, variant_attribute) for a in sub["attributes"]]
                codes, _ = pd.factorize(pd.Series(gkeys, dtype="string"), use_na_sentinel=True)
                group[rows] = codes
        keys = list(attr_keys) if attr_keys is not None else pick_attribute_keys(items, exclude=variant_attribute)
        attrs = np.full((n, MAX_ATTRS), -1, dtype=np.int64)
        if items is not None and len(items) and keys and "attributes" in items:
            table_rows = np.array([index.get(str(i), -1) for i in items["item_id"]])
            ok = table_rows >= 0
            dicts = items["attributes"].to_numpy()[ok]
            rows = table_rows[ok]
            for j, key in enumerate(keys[:MAX_ATTRS]):
                vals = pd.Series([_attr(a, key) for a in dicts], dtype="string")
                attrs[rows, j] = pd.factorize(vals, use_na_sentinel=True)[0]
        name_index = None
        if names and items is not None and len(items) and "title" in items:
            title = dict(zip(items["item_id"].astype(str), items["title"], strict=True))
            name_index = NameIndex.of([title.get(i) for i in ids])
        tower = getattr(vectors, "tower_text", None)
        content = _normalise(tower) if tower is not None and len(tower) == n else fused
        return cls(ids, index, fused, text, image, price, category, group, in_stock, available, vectors.encoder_id,
                   cat_names, keys[:MAX_ATTRS], attrs, content, names=name_index)

    @cached_property
    def share_keys(self) -> np.ndarray:
        """(n, 1 + len(attr_keys)) int64: the category and each attribute's code made distinct across columns
        (column j's code c is j * m + c), -1 where unknown, so a request counts all of them in one pass."""
        codes = np.column_stack([self.category, self.attrs[:, : len(self.attr_keys)]]).astype(np.int64)
        m = int(codes.max()) + 1 if codes.size else 1
        return np.where(codes >= 0, codes + m * np.arange(codes.shape[1]), -1)

    def rows_of(self, item_ids: Any) -> np.ndarray:
        """Row numbers of the given ids, -1 for unknown ones."""
        return np.array([self.index.get(str(i), -1) for i in item_ids], dtype=np.int64)

    def group_members(self) -> dict[int, np.ndarray]:
        """Variant group -> its rows (groups with at least two members), each group's by item id: a source
        listing them must not depend on the catalogue's row order, which an item's update changes."""
        g = self.group
        order = np.lexsort((np.asarray(self.ids, dtype=str), g))
        gs = g[order]
        out: dict[int, np.ndarray] = {}
        starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
        ends = np.r_[starts[1:], len(gs)]
        for s, e in zip(starts, ends, strict=True):
            if gs[s] >= 0 and e - s > 1:
                out[int(gs[s])] = order[s:e]
        return out


MAX_ATTRS = 8


def pick_attribute_keys(items: pd.DataFrame | None, exclude: str | None = None) -> list[str]:
    """Scalar item attributes worth comparing: on at least 30% of items, 2..300 distinct values; sorted by name."""
    if items is None or not len(items) or "attributes" not in items:
        return []
    counts: dict[str, set[str]] = {}
    present: dict[str, int] = {}
    for a in items["attributes"]:
        if not isinstance(a, dict):
            continue
        for k, v in a.items():
            if isinstance(v, str | int) and not isinstance(v, bool) and v != "":
                present[k] = present.get(k, 0) + 1
                vals = counts.setdefault(k, set())
                if len(vals) <= 300:
                    vals.add(str(v))
    n = len(items)
    keys = [k for k in sorted(present) if k != exclude and present[k] >= 0.3 * n and 2 <= len(counts[k]) <= 300]
    return keys[:MAX_ATTRS]


def _attr(attrs: Any, key: str) -> str | None:
    if isinstance(attrs, dict):
        v = attrs.get(key)
        return None if v in (None, "") else str(v)
    return None
