"""Generic CSV / TSV / JSONL / Parquet import of items, users or events, with a column mapping.

Text files may be gzip-compressed (``items.csv.gz``); a CSV file may be delimited by another character than the
comma (``--delimiter ';'``).

Canonical columns (rename yours with ``--map canonical=yours``):

- items:  ``item_id`` (required), ``title``, ``description``, ``category``, ``price``, ``in_stock``, ``image`` (path
  relative to the file, absolute path or URL; several separated by ``|``; a path is stored absolute, without ``..``,
  its symbolic links kept), ``video``; ``attributes`` as a JSON object and every other column become attributes.
- users:  ``user_id`` (required); every other column becomes an attribute.
- events: ``user_id``, ``item_id``, ``type`` (view, click, add_to_cart, purchase, rating, like, dislike; or
  ``--type``), ``value``, ``timestamp`` (ISO 8601 or unix seconds), ``event_id`` (optional client id; rows without one
  get a stable id derived from their content, so identical rows count as separate events and re-imports add nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recsys.errors import ImportFailed
from recsys.store.importers.batch import Writer, parse_rows
from recsys.store.importers.readers import MAX_DEPTH, BadLine, Note, Read, file_format, read_any, too_deep
from recsys.store.importers.records import (
    EventRecord,
    ItemRecord,
    UserRecord,
    check_attributes,
    check_text,
    checked_item,
    event_digest,
    json_value,
    parse_bool,
    parse_event_type,
    parse_float,
    parse_id,
    parse_price,
    parse_text,
    parse_ts,
    shown,
)
from recsys.store.importers.report import ImportReport
from recsys.store.limits import MAX_EVENT_ID

ITEM_COLUMNS = ("item_id", "title", "description", "category", "price", "in_stock", "image", "video", "attributes")
EVENT_COLUMNS = ("user_id", "item_id", "type", "value", "timestamp", "event_id")
KINDS = ("items", "users", "events")
EMPTY = {"csv": "a header line and no rows", "tsv": "a header line and no rows", "jsonl": "no non-blank lines",
         "parquet": "no rows"}
"""What a file of each format held when it held no record."""


def _expects(kind: str, need: list[str]) -> str:
    """What a file of ``kind`` should hold, said when it holds no record at all."""
    hint = " (or pass --type TYPE)" if "type" in need else ""
    return f"`recsys import {kind}` expects one {kind[:-1]} per row or JSON line, with {', '.join(need)}{hint}."


def _remap(rec: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """``rec`` with each ``--map canonical=column`` applied: the column's value under the canonical name (one column
    may feed several), the column itself no longer under its own name."""
    if not mapping:
        return rec
    sources = set(mapping.values())
    return {**{k: v for k, v in rec.items() if k not in sources}, **{dst: rec.get(src) for dst, src in mapping.items()}}


def _check_columns(cols: list[str], need: list[str], mapping: dict[str, str], path: Path) -> None:
    """ImportFailed unless ``cols`` hold the columns a file of this kind needs and every ``--map`` source: a file
    without them is the wrong file (or needs a mapping), which no row-by-row skipping should hide."""
    unknown = [src for src in mapping.values() if src not in cols]
    if unknown:
        raise ImportFailed(f"{path}: --map names column(s) {unknown} that the file does not have "
                           f"(its columns: {cols[:20]})")
    clash = [dst for dst, src in mapping.items() if dst in cols and dst != src and dst not in mapping.values()]
    if clash:  # which of the two is meant is a guess: the mapped one won or lost by the columns' order
        raise ImportFailed(f"{path}: --map {clash[0]}={mapping[clash[0]]}, but the file has a {clash[0]!r} "
                           f"column of its own; map that one to another name too (--map "
                           f"old_{clash[0]}={clash[0]}) or leave out the --map")
    have = set(_remap(dict.fromkeys(cols), mapping))
    missing = [c for c in need if c not in have]
    if missing:
        hint = " (or --type TYPE for a file of one event type)" if "type" in missing else ""
        raise ImportFailed(f"{path}: no {' or '.join(missing)} column (its columns: {cols[:20]}); rename it or "
                           f"map it with --map {missing[0]}=COLUMN{hint}")


def _with_columns(path: Path, fmt: str, delimiter: str, need: list[str], mapping: dict[str, str]) -> Iterator[Read]:
    """The file's rows, its columns checked (:func:`_check_columns`) by its header (CSV, TSV, Parquet) before any
    row, or by its first record that could be read (JSON Lines, where each line has its own keys): a bad first row
    must not hide a wrong file."""
    checked = False

    def check(cols: list[str]) -> None:
        nonlocal checked
        checked = True
        _check_columns(cols, need, mapping, path)

    for row in read_any(path, fmt, delimiter=delimiter, on_header=check):
        if not checked and not isinstance(row, BadLine | Note):
            check(list(row[1]))
        yield row


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and v != v)


def _media(value: Any, base: Path, what: str) -> list[str]:
    if _empty(value):
        return []
    if isinstance(value, str):
        parts = value.split("|")
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        parts = value
    else:  # an object's or number's Python spelling is no path
        raise ValueError(f"{what} must be a path or URL (text, or a list of them), got {shown(value)}")
    out: dict[str, str] = {}  # the file a name reaches -> the first name given for it
    for p in (x.strip() for x in parts):
        if not p:
            continue
        if "://" in p:
            out.setdefault(p, p)
            continue
        # absolute and without "..", but links kept: a link repointed to a new photo is seen by the media identity
        # (and a link loop is stored like any unreadable file, for embed to report, not a crash of the whole file)
        path = os.path.abspath(p if os.path.isabs(p) else base / p)
        out.setdefault(os.path.realpath(path), path)  # one file named two ways is one medium, as before
    return list(out.values())


def item_record(rec: dict[str, Any], base: Path) -> ItemRecord:
    attrs: dict[str, Any] = {}
    raw = rec.get("attributes")
    if not _empty(raw):
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError("attributes is not a JSON object") from None
            except RecursionError:
                raise ValueError(f"attributes nest more than {MAX_DEPTH} levels deep") from None
        if not isinstance(raw, dict):
            raise ValueError("attributes is not a JSON object")
        if too_deep(raw, MAX_DEPTH - 1):
            raise ValueError(f"attributes nest more than {MAX_DEPTH} levels deep")
        attrs.update(raw)
    attrs.update({k: v for k, v in rec.items() if k not in ITEM_COLUMNS and not _empty(v)})
    attrs = {k: json_value(v, f"attribute {k[:40]!r}") for k, v in attrs.items()}  # Parquet dates, decimals...
    given: set[str] = {f for f in ("title", "description", "category", "price", "in_stock", "attributes") if f in rec}
    if "image" in rec or "video" in rec:
        given.add("media")
    if any(k not in ITEM_COLUMNS for k in rec):  # extra columns are the attributes
        given.add("attributes")
    return checked_item(ItemRecord(
        external_id=parse_id(rec.get("item_id"), "item_id"),
        title=parse_text(rec.get("title"), "title"),
        description=parse_text(rec.get("description"), "description"),
        category=parse_text(rec.get("category"), "category") or None,
        price=parse_price(rec.get("price")),
        in_stock=parse_bool(rec.get("in_stock"), "in_stock"),
        attributes=attrs,
        media=[("image", m) for m in _media(rec.get("image"), base, "image")]
        + [("video", m) for m in _media(rec.get("video"), base, "video")],
        given=frozenset(given),
    ))


def import_generic(path: Path, kind: str, writer: Writer, report: ImportReport, max_bad_fraction: float, *,
                   fmt: str = "auto", mapping: dict[str, str] | None = None, event_type: str | None = None,
                   delimiter: str = ",") -> None:
    if kind not in KINDS:
        raise ImportFailed(f"unknown import kind '{kind}'; use one of {', '.join(KINDS)}")
    mapping = mapping or {}
    base = path.resolve().parent
    need = {"items": ["item_id"], "users": ["user_id"]}.get(
        kind, ["user_id", "item_id", "timestamp"] + ([] if event_type else ["type"]))
    rows = _with_columns(path, fmt, delimiter, need, mapping)
    if kind == "items":
        for _, it in parse_rows(rows, lambda r: item_record(_remap(r, mapping), base), report, "items", path):
            writer.item(it)
        writer.flush_items()
    elif kind == "users":
        def user(r: dict[str, Any]) -> UserRecord:
            r = _remap(r, mapping)
            attrs = {k: json_value(v, f"attribute {k[:40]!r}") for k, v in r.items()
                     if k != "user_id" and not _empty(v)}
            check_attributes(attrs)
            # the columns it has: an empty one clears its attribute, one it lacks keeps the stored value
            given = frozenset(k for k in r if k != "user_id")
            return UserRecord(parse_id(r.get("user_id"), "user_id"), attrs, given)

        for _, u in parse_rows(rows, user, report, "users", path):
            writer.user(u)
        writer.flush_users()
    else:
        def event(r: dict[str, Any]) -> EventRecord:
            r = _remap(r, mapping)
            etype = parse_event_type(r.get("type") if not _empty(r.get("type")) else event_type)
            user_id, item_id = parse_id(r.get("user_id"), "user_id"), parse_id(r.get("item_id"), "item_id")
            value = parse_float(r.get("value"), "value")
            ts = parse_ts(r.get("timestamp"))
            cid = parse_text(r.get("event_id"), "event_id") or None
            check_text(cid, "event_id", MAX_EVENT_ID)  # cut short, two ids could become one
            # without one, the writer numbers identical rows over the file (memory bounded, not a set of every row)
            repeat = None if cid else event_digest("gen", (user_id, item_id, etype, str(value), ts.isoformat()))
            return EventRecord(user_id, item_id, etype, ts, value, cid, repeat_of=repeat)

        for line, ev in parse_rows(rows, event, report, "events", path):
            writer.event(path, line, ev)
        writer.flush_events()
    report.check_garbled(kind, path, max_bad_fraction, empty=EMPTY.get(file_format(path, fmt), ""),
                         expects=_expects(kind, need))
