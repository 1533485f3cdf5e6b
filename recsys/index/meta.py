"""Item metadata stored with a generation, and the filters evaluated on it (DESIGN.md decision 7).

A filter is turned into a boolean mask over the generation's rows with vectorised numpy, once per request; the index
then searches only the allowed rows. Metadata is a snapshot taken at build time: live flags (hidden, deleted) reach
queries through ``exclude``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import ValidationFailed

META_FILE = "items.parquet"


def _norm_value(v: Any) -> str | None:
    """Attribute values compare as strings (``"42"`` matches 42 and ``"true"`` matches True); None stays None."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclass
class ItemMeta:
    """Columns of item metadata, one row per item, aligned with ``item_ids``.

    ``category`` (object, None allowed), ``price`` (float64, NaN when unknown), ``in_stock`` (bool),
    ``attributes`` (a dict per row), ``content_hash`` and ``updated_at`` (ISO strings; used to spot changed items).
    """

    item_ids: np.ndarray
    category: np.ndarray
    price: np.ndarray
    in_stock: np.ndarray
    attributes: list[dict[str, Any]]
    content_hash: np.ndarray
    updated_at: np.ndarray
    _attr_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, item_ids: Sequence[str], *, category: Sequence[str | None] | None = None,
              price: Sequence[float | None] | None = None, in_stock: Sequence[bool] | None = None,
              attributes: Sequence[Mapping[str, Any] | None] | None = None,
              content_hash: Sequence[str | None] | None = None,
              updated_at: Sequence[Any] | None = None) -> ItemMeta:
        """Metadata from plain sequences; a missing column gets neutral values (no category, no price, in stock)."""
        n = len(item_ids)

        def col(values: Sequence[Any] | None, default: Any) -> np.ndarray:
            out = np.empty(n, dtype=object)
            out[:] = [default] * n if values is None else list(values)
            if len(out) != n:
                raise ValidationFailed(f"metadata column has {len(out)} rows, expected {n}")
            return out

        prices = np.array([np.nan if p is None or p != p else float(p) for p in (price or [None] * n)],
                          dtype=np.float64)
        stock = np.ones(n, bool) if in_stock is None else np.array([bool(s) for s in in_stock], dtype=bool)
        attrs = [dict(a or {}) for a in (attributes or [None] * n)]
        upd = col(None if updated_at is None else [None if u is None else str(u) for u in updated_at], None)
        meta = cls(item_ids=np.array([str(i) for i in item_ids], dtype=object), category=col(category, None),
                   price=prices, in_stock=stock, attributes=attrs, content_hash=col(content_hash, None),
                   updated_at=upd)
        if not (len(prices) == len(stock) == len(attrs) == n):
            raise ValidationFailed("metadata columns differ in length")
        return meta

    @classmethod
    def from_frame(cls, df: Any) -> ItemMeta:
        """From a frame like :func:`recsys.store.queries.items_frame` (missing columns get neutral values)."""
        def get(c: str) -> list[Any] | None:
            return df[c].tolist() if c in df.columns else None

        upd = get("updated_at")
        return cls.build(df["item_id"].astype(str).tolist(), category=get("category"), price=get("price"),
                         in_stock=get("in_stock"), attributes=get("attributes"), content_hash=get("content_hash"),
                         updated_at=None if upd is None else [None if u is None else _iso(u) for u in upd])

    def __len__(self) -> int:
        return len(self.item_ids)

    def take(self, rows: np.ndarray) -> ItemMeta:
        rows = np.asarray(rows, dtype=np.int64)
        return ItemMeta(self.item_ids[rows], self.category[rows], self.price[rows], self.in_stock[rows],
                        [self.attributes[r] for r in rows], self.content_hash[rows], self.updated_at[rows])

    @staticmethod
    def concat(parts: Sequence[ItemMeta]) -> ItemMeta:
        return ItemMeta(np.concatenate([p.item_ids for p in parts]), np.concatenate([p.category for p in parts]),
                        np.concatenate([p.price for p in parts]), np.concatenate([p.in_stock for p in parts]),
                        [a for p in parts for a in p.attributes], np.concatenate([p.content_hash for p in parts]),
                        np.concatenate([p.updated_at for p in parts]))

    def attribute(self, key: str) -> np.ndarray:
        """Normalised values of one attribute per row (object array of str or None), computed once."""
        if key not in self._attr_cache:
            vals = np.empty(len(self), dtype=object)
            vals[:] = [_norm_value(a.get(key)) for a in self.attributes]
            self._attr_cache[key] = vals
        return self._attr_cache[key]

    # -- persistence (parquet: columnar, typed, no pickle) --------------------------------------------------
    def save(self, path: Path) -> None:
        import pandas as pd

        pd.DataFrame({
            "item_id": self.item_ids.astype(str), "category": self.category, "price": self.price,
            "in_stock": self.in_stock, "attributes": [json.dumps(a, default=str) for a in self.attributes],
            "content_hash": self.content_hash, "updated_at": self.updated_at,
        }).to_parquet(path, index=False)

    @classmethod
    def load(cls, path: Path) -> ItemMeta:
        import pandas as pd

        df = pd.read_parquet(path)

        def opt(c: str) -> list[Any]:
            return df[c].astype(object).where(df[c].notna(), None).tolist()

        return cls.build(df["item_id"].tolist(), category=opt("category"), price=df["price"].tolist(),
                         in_stock=df["in_stock"].tolist(), attributes=[json.loads(a) for a in df["attributes"]],
                         content_hash=opt("content_hash"), updated_at=opt("updated_at"))


def _iso(v: Any) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


@dataclass(frozen=True)
class ItemFilter:
    """What a request may return. Every set field must hold (AND); ``categories`` and list-valued attributes are
    multi-select (OR within the field). Items with an unknown price never pass a price bound."""

    categories: frozenset[str] | None = None
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, *, categories: Iterable[str] | None = None, price_min: float | None = None,
           price_max: float | None = None, in_stock: bool | None = None,
           attributes: Mapping[str, Any] | None = None) -> ItemFilter:
        if price_min is not None and price_max is not None and price_min > price_max:  # "no results" would hide it
            raise ValidationFailed(f"price filter from {price_min:g} to {price_max:g}: the minimum is greater than "
                                   "the maximum")
        return cls(frozenset(categories) if categories is not None else None, price_min, price_max, in_stock,
                   dict(attributes or {}))

    @property
    def is_empty(self) -> bool:
        return (self.categories is None and self.price_min is None and self.price_max is None
                and self.in_stock is None and not self.attributes)

    def mask(self, meta: ItemMeta) -> np.ndarray:
        """bool per row of ``meta``: True where the item passes."""
        m = np.ones(len(meta), dtype=bool)
        if self.categories is not None:
            m &= np.isin(meta.category, np.array(sorted(self.categories), dtype=object))
        with np.errstate(invalid="ignore"):
            if self.price_min is not None:
                m &= meta.price >= self.price_min
            if self.price_max is not None:
                m &= meta.price <= self.price_max
        if self.in_stock is not None:
            m &= meta.in_stock == self.in_stock
        for key, want in self.attributes.items():
            wants = want if isinstance(want, list | tuple | set | frozenset) else [want]
            allowed = np.array([_norm_value(w) for w in wants], dtype=object)
            m &= np.isin(meta.attribute(key), allowed)
        return m

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ItemFilter | None:
        """From a JSON object with the keys of :meth:`to_dict` (None or {} -> None); unknown keys are refused."""
        if not d:
            return None
        unknown = set(d) - {"categories", "price_min", "price_max", "in_stock", "attributes"}
        if unknown:
            raise ValidationFailed(f"unknown filter fields {sorted(unknown)}; use categories, price_min, price_max, "
                                   "in_stock, attributes")
        cats = d.get("categories")
        return cls.of(categories=[cats] if isinstance(cats, str) else cats, price_min=d.get("price_min"),
                      price_max=d.get("price_max"), in_stock=d.get("in_stock"), attributes=d.get("attributes"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.categories is not None:
            d["categories"] = sorted(self.categories)
        for k in ("price_min", "price_max", "in_stock"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.attributes:
            d["attributes"] = dict(self.attributes)
        return d


def _finite(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):  # "nan" and "inf" parse as floats; no price compares to them usefully
        raise ValueError(text)
    return x


def parse_filters(specs: Sequence[str]) -> ItemFilter | None:
    """Parse CLI filter expressions: ``category=A|B``, ``price>=X``, ``price<=X``, ``in_stock=true``,
    ``attr.KEY=VALUE`` (``|`` separates alternatives). None when ``specs`` is empty."""
    if not specs:
        return None
    cats: set[str] | None = None
    pmin = pmax = None
    stock: bool | None = None
    attrs: dict[str, Any] = {}
    for spec in specs:
        s = spec.strip()
        try:
            if s.startswith("price>="):
                pmin = _finite(s[len("price>="):])
            elif s.startswith("price<="):
                pmax = _finite(s[len("price<="):])
            elif "=" in s:
                key, value = (p.strip() for p in s.split("=", 1))
                if key == "category":
                    cats = (cats or set()) | set(value.split("|"))
                elif key == "in_stock":
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    stock = value.lower() in ("true", "1", "yes")
                elif key.startswith("attr."):
                    vals = value.split("|")
                    attrs[key[5:]] = vals if len(vals) > 1 else vals[0]
                else:
                    raise ValueError(key)
            else:
                raise ValueError(s)
        except ValueError:
            raise ValidationFailed(
                f"bad filter {spec!r}: use category=A|B, price>=X, price<=X, in_stock=true|false or attr.KEY=VALUE"
            ) from None
    return ItemFilter.of(categories=cats, price_min=pmin, price_max=pmax, in_stock=stock, attributes=attrs)
