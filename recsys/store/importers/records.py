"""Canonical records that every importer produces and the writer stores, with their parsing rules."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from recsys.store.limits import (
    DOT_SEGMENTS,
    MAX_ATTRIBUTE_TEXT,
    MAX_EVENT_VALUE,
    MAX_ID,
    MAX_MEDIA_URI,
    MAX_SHORT_TEXT,
    MAX_TEXT,
    PRINTABLE,
)
from recsys.store.tables import EVENT_TYPES

# Parsing functions raise ValueError with a human reason: the importers skip that row and list the reason.

FUTURE_SLACK = timedelta(days=1)
"""How far ahead of this machine's clock an event's time may be (a client's clock may be off, or its time zone
misread); later ones are refused."""

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
    given: frozenset[str] | None = None
    """The attribute names the source gave (a file's columns): an existing user keeps its stored value of every
    other one, and a name given without a value (an empty cell) is removed. None: the attributes replace the stored
    ones whole (the dataset importers, which give every column)."""


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
    repeat_of: str | None = None
    """A file's event without a client id: its content digest (:func:`event_digest`). The writer numbers identical
    ones by occurrence over the whole file and sets ``client_event_id`` (:func:`derived_event_id`)."""

    def __post_init__(self) -> None:
        check_event_value(self.value)  # every source alike: files, POST /v1/events, the CLI


def check_event_value(value: float | None) -> float | None:
    """``value`` if it is None or within ±:data:`MAX_EVENT_VALUE`; else ValueError naming the range."""
    if value is not None and not -MAX_EVENT_VALUE <= value <= MAX_EVENT_VALUE:
        bound = f"{MAX_EVENT_VALUE:g}".replace("e+", "e")
        raise ValueError(f"value {value:g} is out of range: an event's value (a price paid, a rating) must lie "
                         f"within -{bound}..{bound}")
    return value


def parse_id(value: Any, what: str) -> str:
    if value is None:
        raise ValueError(f"missing {what}")
    if isinstance(value, dict | list | tuple | set | bool | bytes):  # JSON lines: an object is not an id
        raise ValueError(f"{what} must be a string or a number, not {type(value).__name__}")
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError(f"missing {what}")
        if value.is_integer():
            value = int(value)
    s = str(value).strip()
    if not s:
        raise ValueError(f"empty {what}")
    if len(s) > MAX_ID:
        raise ValueError(f"{what} longer than {MAX_ID} characters")
    if not re.match(PRINTABLE, s):  # the API refuses such ids: no request could name the record
        raise ValueError(f"{what} {s!r} contains a control character (a tab, newline, NUL...): a garbled field")
    if "/" in s or s in DOT_SEGMENTS:  # no /v1/items/{id} or /v1/users/{id}/... path could address it
        raise ValueError(f"{what} {s!r} " + ("contains '/'" if "/" in s else "is a path's dot segment") +
                         ", which the HTTP API's paths cannot address: replace it (e.g. by '-')")
    return s


def parse_float(value: Any, what: str, *, required: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"missing {what}")
        return None
    if isinstance(value, bool):  # JSON true is not 1.0
        raise ValueError(f"{what} is not a number: {shown(value)}")
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
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


def is_number_text(value: Any) -> bool:
    """``value`` is a number written as text ("1764583200", "99999999999.5"): unix seconds, never ISO 8601."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def parse_ts(value: Any) -> datetime:
    """ISO 8601 (naive means UTC), a date, or unix seconds; stored as naive UTC, within 1970..2200 and not ahead
    of the clock (:func:`not_in_future`)."""
    dt = datetime_of(value)
    if not 1970 <= dt.year <= 2200:
        raise out_of_range(value, dt)
    return not_in_future(dt)


def out_of_range(value: Any, dt: datetime | None = None) -> ValueError:
    """The refusal of a time outside 1970..2200 in UTC (``dt``, naive) or outside what a datetime holds (no ``dt``):
    the value as given (a datetime as ISO 8601, never its Python repr), and what it is in UTC when that is another
    day, since an offset can move it across a year."""
    given = value.isoformat() if isinstance(value, datetime) else value
    if dt is None:
        return ValueError(f"timestamp out of range: {given!r}{_seconds_hint(value)}")
    utc = "" if str(given).strip().startswith(dt.date().isoformat()) else f" ({dt.isoformat()} in UTC)"
    return ValueError(f"timestamp out of range (years 1970..2200 in UTC): {given!r}{utc}{_seconds_hint(value)}")


def datetime_of(value: Any) -> datetime:
    """A time as every part of recsys reads one, as naive UTC: ISO 8601 text (naive means UTC), a date, or unix
    seconds (a number, or a number written as text); ValueError for anything else or a time no datetime holds."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, bool | list | dict):  # JSON true is not 1970-01-01T00:00:01
        raise ValueError(f"timestamp must be ISO 8601 text or unix seconds, got {shown(value)}")
    elif value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing timestamp")
    elif isinstance(value, int | float) or is_number_text(value):
        try:
            dt = datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise out_of_range(value) from None
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"unparseable timestamp {str(value)[:40]!r} (use ISO 8601 or unix seconds)") from None
    if dt.tzinfo is not None:
        try:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+05:00: before what a datetime holds once in UTC
            raise out_of_range(value) from None
    return dt


def _seconds_hint(value: Any) -> str:
    try:
        big = abs(float(value)) > 1e11
    except (TypeError, ValueError):
        return ""
    return " (a number is unix seconds; this looks like milliseconds: divide by 1000)" if big else ""


def not_in_future(dt: datetime) -> datetime:
    """``dt`` (naive UTC) unless it lies more than :data:`FUTURE_SLACK` ahead of the clock: such an event would
    become its user's "now", leaving every trend window of theirs empty."""
    now = datetime.now(UTC).replace(tzinfo=None)
    if dt > now + FUTURE_SLACK:
        raise ValueError(f"timestamp {dt.isoformat()} is in the future (the clock says "
                         f"{now.isoformat(timespec='seconds')}); send the time the event happened (ISO 8601, naive = "
                         "UTC, or unix seconds)")
    return dt


def parse_event_type(value: Any) -> str:
    s = str(value or "").strip().lower()
    if s not in EVENT_TYPES:
        raise ValueError(f"unknown event type {value!r}; expected one of {', '.join(EVENT_TYPES)}")
    return s


def event_digest(prefix: str, parts: tuple[Any, ...]) -> str:
    """What identical event rows share: ``prefix:`` and a digest of their content."""
    return f"{prefix}:{hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:24]}"


def derived_event_id(prefix: str, parts: tuple[Any, ...], occurrence: int) -> str:
    """A stable id for an event without one: identical rows are separate events, numbered by occurrence."""
    return f"{event_digest(prefix, parts)}:{occurrence}"


def shown(value: Any) -> str:
    """``value`` as a reason quotes it: as JSON (``true``, ``[1, 2]``, ``-3``), text quoted; at most ~40
    characters."""
    if isinstance(value, str):
        s = repr(value)
    else:
        try:
            s = json.dumps(value)
        except (TypeError, ValueError):
            s = type(value).__name__
    return s if len(s) <= 40 else s[:37] + "..."


def parse_text(value: Any, what: str) -> str:
    """A text field, trimmed: a string, or a number (a Parquet or JSON category may be one); None or NaN (a missing
    value) is "". A list, object or boolean is refused rather than stored as its Python spelling."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{what} must be text, got {shown(value)}")
    return str(value).strip()


def parse_price(value: Any) -> float | None:
    """A price: a number from 0 to :data:`MAX_EVENT_VALUE` (or its text); None or blank text clears it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    f: float | None = None
    if isinstance(value, str | int | float | Decimal) and not isinstance(value, bool):
        try:
            f = float(value)
        except (ValueError, OverflowError):
            f = None
    if f is None or not math.isfinite(f) or f < 0:
        raise ValueError(f"price must be a non-negative number, got {shown(value)}")
    if f > MAX_EVENT_VALUE:  # as an event's price paid: 1e308 made ranking's price ratio infinite
        raise ValueError(f"price {f:g} is out of range: at most {MAX_EVENT_VALUE:g}".replace("e+", "e"))
    return f


def check_text(value: str | None, what: str, limit: int) -> None:
    """The HTTP API's bounds on a text field (:mod:`recsys.store.limits`), so an imported value is one the API
    would accept; PostgreSQL refuses NUL in text, which would fail the whole import."""
    if value is None:
        return
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value):,} characters long; at most {limit:,} are allowed")
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")


def check_attributes(attributes: dict[str, Any]) -> None:
    """Attribute names and text values (nested ones too) within the API's bounds, numbers finite, and nothing JSON
    cannot hold (the store's column is JSON: such a value would fail the whole import at the commit)."""
    for key, value in attributes.items():
        check_text(str(key), f"attribute name {str(key)[:40]!r}", MAX_SHORT_TEXT)
        todo = [value]
        while todo:  # nesting is already bounded (readers.MAX_DEPTH)
            v = todo.pop()
            if isinstance(v, str):
                check_text(v, f"attribute {str(key)[:40]!r}", MAX_ATTRIBUTE_TEXT)
            elif isinstance(v, float) and not math.isfinite(v):  # not JSON: no database or client could read it
                raise ValueError(f"attribute {str(key)[:40]!r} is {v}, not a finite number")
            elif isinstance(v, dict):
                todo.extend(v.values())
            elif isinstance(v, list):
                todo.extend(v)
            elif not (v is None or isinstance(v, bool | int | float)):
                raise ValueError(f"attribute {str(key)[:40]!r} holds a {type(v).__name__} value, which JSON cannot "
                                 "hold")


def json_value(value: Any, what: str) -> Any:
    """A Parquet (or other typed) value as JSON holds it: a date, time or timestamp as ISO 8601 text, a decimal as
    a float, within lists and objects too; ValueError naming ``what`` for binary data or any other type, which no
    attribute can hold (the row is skipped, not the file)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime | date | time):  # a datetime keeps its time and offset
        return value.isoformat()
    if isinstance(value, Decimal):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"{what} is {value}, not a finite number")
        return f
    if isinstance(value, dict):
        return {str(k): json_value(v, what) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v, what) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{what} is binary data ({len(value):,} bytes), which an attribute cannot hold: leave the "
                         "column out, or convert it to text (base64, say) before importing")
    raise ValueError(f"{what} is a {type(value).__name__} value, which an attribute cannot hold (text, numbers, "
                     "true/false, lists and objects): convert the column to one of these before importing")


def checked_item(rec: ItemRecord) -> ItemRecord:
    """``rec`` if each of its fields is within the API's bounds; else ValueError naming the field and its limit
    (a per-row bad record, so the rest of the file imports)."""
    check_text(rec.title, "title", MAX_TEXT)
    check_text(rec.description, "description", MAX_TEXT)
    check_text(rec.category, "category", MAX_SHORT_TEXT)
    for kind, uri in rec.media:
        check_text(uri, f"{kind} path or URL", MAX_MEDIA_URI)
    check_attributes(rec.attributes)
    return rec
