"""Item metadata stored with a generation, and the filters evaluated on it (DESIGN.md decision 7).

A filter is turned into a boolean mask over the generation's rows with vectorised numpy, once per request; the index
then searches only the allowed rows. Metadata is a snapshot taken at build time: live flags (hidden, deleted) reach
queries through ``exclude``; a served generation's metadata is that snapshot :meth:`ItemMeta.patched` with the items
changed since (:mod:`recsys.serving.live_meta`), so a price or stock feed with no new generation is filtered on.

Category and attribute values match ignoring case and surrounding whitespace (``dress`` finds "Dress"): each such
column is coded once per generation (:class:`Vocabulary`), so a request compares small integers. A requested value
that no item has is named by :meth:`ItemFilter.unknown_values`, with the known values closest to it.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
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


def _fold(v: Any) -> str | None:
    """A value as filters compare it: normalised (:func:`_norm_value`), trimmed, case-folded; None stays None."""
    n = None if isinstance(v, float) and v != v else _norm_value(v)  # NaN: a missing value read from a frame
    return None if n is None else n.strip().casefold()


@dataclass(frozen=True)
class Vocabulary:
    """One column's values as filters see them: ``codes`` (int32 per row, -1 where the row has no value) index
    ``spellings`` (a value as first written in the catalogue), ``index`` maps each folded value to its code."""

    codes: np.ndarray
    index: Mapping[str, int]
    spellings: Sequence[str]

    @classmethod
    def of(cls, values: Sequence[Any]) -> Vocabulary:
        index: dict[str, int] = {}
        spellings: list[str] = []
        codes = np.empty(len(values), dtype=np.int32)
        for row, v in enumerate(values):
            folded = _fold(v)
            if folded is None:
                codes[row] = -1
                continue
            code = index.get(folded)
            if code is None:
                code = index[folded] = len(spellings)
                spellings.append(str(_norm_value(v)).strip())
            codes[row] = code
        return cls(codes, index, spellings)

    def take(self, rows: np.ndarray) -> Vocabulary:
        return Vocabulary(self.codes[rows], self.index, self.spellings)

    def matches(self, wanted: Iterable[Any]) -> np.ndarray:
        """bool per row: True where the row's value is one of ``wanted`` (None: rows without a value)."""
        codes = [-1 if f is None else self.index.get(f, -2) for f in map(_fold, wanted)]
        return np.isin(self.codes, np.array([c for c in codes if c != -2], dtype=np.int32))

    def unknown(self, wanted: Iterable[Any]) -> list[tuple[str, list[str]]]:
        """(value, the closest known spellings) for each of ``wanted`` that no row has."""
        out = []
        for w in wanted:
            folded = _fold(w)
            if folded is not None and folded not in self.index:
                close = difflib.get_close_matches(folded, list(self.index), n=3, cutoff=0.6)
                out.append((str(w), [self.spellings[self.index[c]] for c in close]))
        return out


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
    _vocab_cache: dict[str, Vocabulary] = field(default_factory=dict, repr=False, compare=False)
    _keys: frozenset[str] | None = field(default=None, repr=False, compare=False)

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
        """The ``rows`` alone (coded columns kept: a filter on a few rows does not code the whole column again)."""
        rows = np.asarray(rows, dtype=np.int64)
        return ItemMeta(self.item_ids[rows], self.category[rows], self.price[rows], self.in_stock[rows],
                        [self.attributes[r] for r in rows], self.content_hash[rows], self.updated_at[rows],
                        _vocab_cache={k: v.take(rows) for k, v in self._vocab_cache.items()})

    @staticmethod
    def concat(parts: Sequence[ItemMeta]) -> ItemMeta:
        return ItemMeta(np.concatenate([p.item_ids for p in parts]), np.concatenate([p.category for p in parts]),
                        np.concatenate([p.price for p in parts]), np.concatenate([p.in_stock for p in parts]),
                        [a for p in parts for a in p.attributes], np.concatenate([p.content_hash for p in parts]),
                        np.concatenate([p.updated_at for p in parts]))

    def patched(self, changes: Iterable[Sequence[Any]]) -> ItemMeta:
        """A copy whose rows of the items in ``changes`` ((item_id, category, price, in_stock, attributes) each;
        ids not here are ignored) hold those values. Ids, content hashes, update times and order are kept; the
        coded columns are coded again on first use (a new category must be known to filters and suggestions)."""
        new = {str(c[0]): c for c in changes}
        category, price, in_stock = self.category.copy(), self.price.copy(), self.in_stock.copy()
        attrs = list(self.attributes)
        for row, item_id in enumerate(self.item_ids.tolist()):
            c = new.get(item_id)
            if c is not None:  # every row of the id: a delta's dead row of it is masked anyway
                _, category[row], p, stock, a = c
                price[row] = np.nan if p is None or p != p else float(p)
                in_stock[row], attrs[row] = bool(stock), dict(a) if isinstance(a, Mapping) else {}
        return ItemMeta(self.item_ids, category, price, in_stock, attrs, self.content_hash, self.updated_at)

    @cached_property
    def newest_update(self) -> datetime | None:
        """The latest ``updated_at`` of the rows (naive UTC, as the store keeps it; the strings compared as times,
        not as text), None when no row has one: what the store changed after this snapshot is newer."""
        import pandas as pd

        stamps = [u for u in self.updated_at.tolist() if u is not None]
        if not stamps:
            return None
        newest = pd.to_datetime(pd.Series(stamps), format="ISO8601", utc=True).max()
        return None if pd.isna(newest) else newest.tz_convert(None).to_pydatetime()

    def attribute(self, key: str) -> np.ndarray:
        """Normalised values of one attribute per row (object array of str or None), computed once."""
        if key not in self._attr_cache:
            vals = np.empty(len(self), dtype=object)
            vals[:] = [_norm_value(a.get(key)) for a in self.attributes]
            self._attr_cache[key] = vals
        return self._attr_cache[key]

    def vocabulary(self, column: str) -> Vocabulary:
        """The coded values of ``category`` or of an attribute (``attributes.KEY``), computed once (an attribute no
        item has is not kept: a request may name any)."""
        if column != "category" and column.removeprefix("attributes.") not in self.attribute_keys():
            return Vocabulary(np.full(len(self), -1, dtype=np.int32), {}, [])
        if column not in self._vocab_cache:
            values = self.category if column == "category" else self.attribute(column.removeprefix("attributes."))
            self._vocab_cache[column] = Vocabulary.of(values.tolist())
        return self._vocab_cache[column]

    def attribute_keys(self) -> frozenset[str]:
        """Every attribute key some item has, computed once."""
        if self._keys is None:
            self._keys = frozenset(k for a in self.attributes for k in a)
        return self._keys

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


def _values(want: Any) -> list[Any]:
    """An attribute filter's values: a list (any of them) or one value."""
    return list(want) if isinstance(want, list | tuple | set | frozenset) else [want]


def _iso(v: Any) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


@dataclass(frozen=True)
class ItemFilter:
    """What a request may return. Every set field must hold (AND); ``categories`` and list-valued attributes are
    multi-select (OR within the field); their values match ignoring case and surrounding whitespace. Items with an
    unknown price never pass a price bound."""

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
        if isinstance(categories, str):  # one category, not a set of its letters (which would match nothing)
            categories = [categories]
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
            m &= meta.vocabulary("category").matches(self.categories)
        with np.errstate(invalid="ignore"):
            if self.price_min is not None:
                m &= meta.price >= self.price_min
            if self.price_max is not None:
                m &= meta.price <= self.price_max
        if self.in_stock is not None:
            m &= meta.in_stock == self.in_stock
        for key, want in self.attributes.items():
            m &= meta.vocabulary(f"attributes.{key}").matches(_values(want))
        return m

    def unknown_values(self, meta: ItemMeta, limit: int | None = None) -> list[dict[str, Any]]:
        """The category and attribute values of this filter that no item of ``meta`` has (each selects nothing),
        each as ``{"field", "value", "closest"}`` (up to 3 known values most like it); an attribute no item has
        also gets ``closest_fields`` (the attribute names most like it). With ``limit``, the first ``limit`` only
        (:meth:`unknown_count` counts them all): a filter may name 100,000 values, and difflib's ``closest`` for
        each took the better part of a second and made the answer megabytes."""
        out: list[dict[str, Any]] = []
        for column, value in itertools.islice(self._unknown(meta), limit):
            ((said, closest),) = meta.vocabulary(column).unknown([value])
            out.append({"field": column, "value": said, "closest": closest})
            key = column.removeprefix("attributes.")
            if column != "category" and key not in meta.attribute_keys():
                near = difflib.get_close_matches(key, sorted(meta.attribute_keys()), n=3, cutoff=0.6)
                out[-1]["closest_fields"] = [f"attributes.{k}" for k in near]
        return out

    def unknown_count(self, meta: ItemMeta) -> int:
        """How many values :meth:`unknown_values` names without a ``limit`` (none of them compared for ``closest``)."""
        return sum(1 for _ in self._unknown(meta))

    def _unknown(self, meta: ItemMeta) -> Iterator[tuple[str, Any]]:
        """(column, value) for each category and attribute value of this filter that no item of ``meta`` has."""
        wanted = [("category", sorted(self.categories or ()))]
        wanted += [(f"attributes.{key}", _values(want)) for key, want in self.attributes.items()]
        for column, values in wanted:
            known = meta.vocabulary(column).index
            for value in values:
                folded = _fold(value)
                if folded is not None and folded not in known:
                    yield column, value

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
