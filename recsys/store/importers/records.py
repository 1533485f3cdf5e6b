"""Canonical records that every importer produces and the writer stores, with their parsing rules."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from recsys.store.tables import EVENT_TYPES

# Sentinels for unparseable values; parsing functions raise ValueError with a human reason.


ITEM_FIELDS = frozenset({"title", "description", "category", "price", "in_stock", "attributes", "media"})


@dataclass
class ItemRecord:
    external_id: str
    title: str = ""
    description: str = ""
    category: str | None = None
    price: float | None = None
    in_stock: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)
    media: list[tuple[str, str]] = field(default_factory=list)
    """(kind, uri) pairs in display order; kind is "image" or "video"."""
    given: frozenset[str] | None = None
    """The fields the source gave (of :data:`ITEM_FIELDS`); an existing item keeps its stored value of every other
    one, so a price feed does not blank titles and photos. None: all of them (the dataset importers)."""

    def content_hash(self) -> str:
        payload = [self.title, self.description, self.category, self.price, self.in_stock, self.attributes,
                   self.media]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class UserRecord:
    external_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class EventRecord:
    user_id: str
    item_id: str
    type: str
    ts: datetime
    value: float | None = None
    client_event_id: str | None = None
    recommendation_id: str | None = None
    """The served list the event answers (attribution), and the item's position in it."""
    position: int | None = None


def parse_id(value: Any, what: str) -> str:
    if value is None:
        raise ValueError(f"missing {what}")
    if isinstance(value, dict | list | tuple | set | bool):  # JSON lines: an object is not an id
        raise ValueError(f"{what} must be a string or a number, not {type(value).__name__}")
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError(f"missing {what}")
        if value.is_integer():
            value = int(value)
    s = str(value).strip()
    if not s:
        raise ValueError(f"empty {what}")
    if len(s) > 128:
        raise ValueError(f"{what} longer than 128 characters")
    if "/" in s:  # no /v1/items/{id} or /v1/users/{id}/... path could address it
        raise ValueError(f"{what} {s!r} contains '/', which the HTTP API's paths cannot address: replace it "
                         "(e.g. by '-')")
    return s


def parse_float(value: Any, what: str, *, required: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"missing {what}")
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{what} is not finite: {value!r}")
    return f


def parse_bool(value: Any, what: str) -> bool:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in {"1", "true", "yes", "y", "t"}:
        return True
    if s in {"0", "false", "no", "n", "f"}:
        return False
    raise ValueError(f"{what} is not a boolean: {value!r}")


def parse_ts(value: Any) -> datetime:
    """ISO 8601 (naive means UTC), a date, or unix seconds; stored as naive UTC."""
    if isinstance(value, datetime):
        dt = value
    elif value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing timestamp")
    elif isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        try:
            dt = datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"timestamp out of range: {value!r}") from None
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"unparseable timestamp {str(value)[:40]!r} (use ISO 8601 or unix seconds)") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    if not 1970 <= dt.year <= 2200:
        raise ValueError(f"timestamp out of range: {value!r}")
    return dt


def parse_event_type(value: Any) -> str:
    s = str(value or "").strip().lower()
    if s not in EVENT_TYPES:
        raise ValueError(f"unknown event type {value!r}; expected one of {', '.join(EVENT_TYPES)}")
    return s


def derived_event_id(prefix: str, parts: tuple[Any, ...], occurrence: int) -> str:
    """A stable id for an event without one: identical rows are separate events, numbered by occurrence."""
    digest = hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:24]
    return f"{prefix}:{digest}:{occurrence}"
