"""What the generic importer accepts as a value: files without records, fields past the HTTP API's limits, JSON
values of the wrong type, and where in a line a JSON error is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.errors import ImportFailed
from recsys.store import Item, Store
from recsys.store.importers import ImportReport, run_import
from recsys.store.limits import MAX_ATTRIBUTE_TEXT, MAX_EVENT_ID, MAX_MEDIA_URI, MAX_SHORT_TEXT, MAX_TEXT
from recsys.store.queries import stats
from tests.store.fixtures import write_hm

GOOD = 60
"""Good records around the bad ones, so a few bad rows stay under the bad-fraction limit."""


def _jsonl(path: Path, records: list[dict[str, Any] | str]) -> Path:
    """``records`` (a str is written as is) after GOOD good items, one per line."""
    good = [json.dumps({"item_id": f"ok{i}", "title": "Mug"}) for i in range(GOOD)]
    path.write_text("\n".join(good + [r if isinstance(r, str) else json.dumps(r) for r in records]) + "\n")
    return path


def _reasons(report: ImportReport) -> dict[int, str]:
    return {b.line: b.reason for b in report.bad_rows}


def _stored(store: Store) -> dict[str, tuple[str, str, str | None, float | None]]:
    with store.session() as s:
        rows = s.execute(select(Item.external_id, Item.title, Item.description, Item.category, Item.price))
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


# -- 1. a file without records -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "kind", "body", "held"), [
    ("header.csv", "items", "item_id,title\n", "a header line and no rows"),
    ("header.tsv", "users", "user_id\tage\n\n\n", "a header line and no rows"),
    ("empty.jsonl", "items", "", "no non-blank lines"),
    ("blank.jsonl", "events", "\n  \n", "no non-blank lines"),
    ("none.parquet", "items", None, "no rows"),
])
def test_a_file_without_records_is_refused(store: Store, settings: Settings, tmp_path: Path, name: str, kind: str,
                                           body: str | None, held: str) -> None:
    """It exited 0 having imported nothing: most likely the wrong file, or an export that failed."""
    run_import(store, "items", _jsonl(tmp_path / "before.jsonl", []), settings=settings)
    before = _stored(store)
    f = tmp_path / name
    if body is None:
        pq.write_table(pa.table({"item_id": pa.array([], pa.string())}), f)
    else:
        f.write_text(body)
    expects = {"items": "one item per row or JSON line, with item_id",
               "users": "one user per row or JSON line, with user_id",
               "events": "with user_id, item_id, timestamp, type (or pass --type TYPE)"}[kind]
    with pytest.raises(ImportFailed) as exc:
        run_import(store, kind, f, settings=settings)
    said = str(exc.value)
    assert said.startswith(f"{f}: the file holds no records ({held}); nothing was imported")
    assert expects in said and f"`recsys import {kind}`" in said
    assert _stored(store) == before
    with store.session() as s:
        assert stats(s)["users"] == 0


def test_a_dataset_file_without_records_is_refused(store: Store, settings: Settings, tmp_path: Path) -> None:
    root = write_hm(tmp_path / "hm")
    (root / "transactions.csv").write_text("t_dat,customer_id,article_id,price,sales_channel_id\n")
    with pytest.raises(ImportFailed, match=r"transactions.csv: the file holds no records; nothing was imported"):
        run_import(store, "hm", root, settings=settings)
    assert _stored(store) == {}


# -- 2. fields past the API's limits -----------------------------------------------------------------------------
LIMITED: list[tuple[str, int, str]] = [
    ("title", MAX_TEXT, "title"),
    ("description", MAX_TEXT, "description"),
    ("category", MAX_SHORT_TEXT, "category"),
    ("colour", MAX_ATTRIBUTE_TEXT, "attribute 'colour'"),
    ("image", MAX_MEDIA_URI, "image path or URL"),
]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_field_past_the_apis_limit_is_a_bad_row(store: Store, settings: Settings, tmp_path: Path,
                                                  fmt: str) -> None:
    """A 5 MB title imported, while the API refuses one over 100,000 characters: the same limits now apply, each
    field over its limit a bad row naming the field and the limit, and the rest of the file imports."""
    records: list[dict[str, Any]] = []
    for column, limit, _ in LIMITED:
        url = "http://x/" if column == "image" else ""  # a URL is kept as given, a path is resolved
        records.append({"item_id": f"at-{column}", column: url + "a" * (limit - len(url))})
        records.append({"item_id": f"over-{column}", column: url + "a" * (limit + 1 - len(url))})
    records.append({"item_id": "name", "x" * (MAX_SHORT_TEXT + 1): "red"})
    records.append({"item_id": "huge", "title": "x" * 5_000_000})
    if fmt == "jsonl":
        f = _jsonl(tmp_path / "items.jsonl", list(records))
    else:
        cols = ["item_id", *(c for c, _, _ in LIMITED)]
        f = tmp_path / "items.csv"
        lines = [",".join(cols)] + [f"ok{i},Mug,,,," for i in range(GOOD)]
        lines += [",".join(str(r.get(c, "")) for c in cols) for r in records if r["item_id"] != "name"]
        f.write_text("\n".join(lines) + "\n")
    report = run_import(store, "items", f, settings=settings)
    reasons = _reasons(report)
    first = GOOD + (1 if fmt == "jsonl" else 2)  # the line of records[0]
    for n, (_, limit, what) in enumerate(LIMITED):
        assert reasons.pop(first + 2 * n + 1) == (f"{what} is {limit + 1:,} characters long; at most {limit:,} "
                                                  "are allowed")
    huge = first + 2 * len(LIMITED) + (1 if fmt == "jsonl" else 0)
    assert reasons.pop(huge) == f"title is 5,000,000 characters long; at most {MAX_TEXT:,} are allowed"
    if fmt == "jsonl":
        assert reasons.pop(huge - 1) == (f"attribute name '{'x' * 40}' is {MAX_SHORT_TEXT + 1} characters long; "
                                         f"at most {MAX_SHORT_TEXT} are allowed")
    assert reasons == {}
    stored = _stored(store)
    assert {f"at-{c}" for c, _, _ in LIMITED} <= set(stored) and len(stored) == GOOD + len(LIMITED)
    assert len(stored["at-title"][0]) == MAX_TEXT


def test_the_import_limits_are_the_apis(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A record at a limit is one both accept; one past it, one both refuse."""
    from pydantic import ValidationError

    from recsys.api.schemas import EventIn, ItemIn

    def item(column: str, length: int) -> dict[str, Any]:
        url = "http://x/" if column == "image" else ""
        value = url + "a" * (length - len(url))
        return {"item_id": "a", **({"attributes": {column: value}} if column == "colour" else {column: value})}

    for column, limit, _ in LIMITED:
        ItemIn.model_validate(item(column, limit))
        with pytest.raises(ValidationError):
            ItemIn.model_validate(item(column, limit + 1))
    base = {"user_id": "u", "item_id": "i", "type": "view"}
    EventIn.model_validate({**base, "event_id": "e" * MAX_EVENT_ID})
    with pytest.raises(ValidationError):
        EventIn.model_validate({**base, "event_id": "e" * (MAX_EVENT_ID + 1)})
    run_import(store, "items", _jsonl(tmp_path / "items.jsonl", []), settings=settings)
    ev = tmp_path / "events.csv"
    rows = [f"u1,ok{i},view,2024-01-01,e{i}" for i in range(GOOD)]
    ev.write_text("user_id,item_id,type,timestamp,event_id\n" + "\n".join(
        [*rows, "u1,ok1,view,2024-01-01," + "e" * MAX_EVENT_ID, "u1,ok1,view,2024-01-01," + "e" * (MAX_EVENT_ID + 1)])
        + "\n")
    report = run_import(store, "events", ev, settings=settings)  # it was cut to 200 characters: two ids became one
    assert report.tables["events"].inserted == GOOD + 1
    assert _reasons(report) == {GOOD + 3: f"event_id is {MAX_EVENT_ID + 1} characters long; at most "
                                          f"{MAX_EVENT_ID} are allowed"}


def test_a_csv_field_past_the_csv_readers_limit_stops_the_file(store: Store, settings: Settings,
                                                               tmp_path: Path) -> None:
    """Python's csv reader refuses fields over its own limit; resuming after one could read a quoted field's text
    as rows, so the file is refused, saying why (it said only "field larger than field limit")."""
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\nok,Mug\nbig,\"" + "x" * 10_000_001 + "\"\nok2,Cup\n")
    with pytest.raises(ImportFailed, match=r"items.csv:3: a field longer than 10,000,000 characters \(an unclosed "
                                           r"quote, or not delimited text\?\); nothing was imported"):
        run_import(store, "items", f, settings=settings)
    assert _stored(store) == {}


# -- 3. JSON values of the wrong type ----------------------------------------------------------------------------
def test_json_values_of_the_wrong_type_are_bad_rows(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A list or object title was stored as its Python spelling, `price: true` as 1.0, a negative price as is."""
    bad = [
        ({"title": ["x", "y"]}, 'title must be text, got ["x", "y"]'),
        ({"title": {"k": 1}}, 'title must be text, got {"k": 1}'),
        ({"description": False}, "description must be text, got false"),
        ({"category": ["shirt"]}, 'category must be text, got ["shirt"]'),
        ({"price": True}, "price must be a non-negative number, got true"),
        ({"price": -3}, "price must be a non-negative number, got -3"),
        ({"price": -0.5}, "price must be a non-negative number, got -0.5"),
        ('{"item_id": "x", "price": NaN}', "price must be a non-negative number, got NaN"),
        ('{"item_id": "x", "price": -Infinity}', "price must be a non-negative number, got -Infinity"),
        ({"price": "1e999"}, "price must be a non-negative number, got '1e999'"),
        ({"price": [3]}, "price must be a non-negative number, got [3]"),
        ({"image": {"url": "http://x/a.jpg"}}, 'image must be a path or URL (text, or a list of them), got {"url": '
                                               '"http://x/a.jpg"}'),
    ]
    records: list[dict[str, Any] | str] = [r if isinstance(r, str) else {"item_id": f"b{i}", **r}
                                           for i, (r, _) in enumerate(bad)]
    records += [{"item_id": "fine", "title": "Mug", "category": 7, "price": 0, "image": ["http://x/a.jpg"]}]
    report = run_import(store, "items", _jsonl(tmp_path / "items.jsonl", records), settings=settings)
    assert _reasons(report) == {GOOD + 1 + i: reason for i, (_, reason) in enumerate(bad)}
    assert _stored(store)["fine"] == ("Mug", "", "7", 0.0)  # a number is text enough for a category


def test_json_event_values_of_the_wrong_type_are_bad_rows(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "items", _jsonl(tmp_path / "items.jsonl", []), settings=settings)
    good = [{"user_id": "u1", "item_id": f"ok{i}", "type": "view", "timestamp": 1704103200 + i} for i in range(GOOD)]
    bad = [({"timestamp": True}, "timestamp must be ISO 8601 text or unix seconds, got true"),
           ({"value": True}, "value is not a number: true"),
           ({"event_id": {"id": 1}}, 'event_id must be text, got {"id": 1}')]
    f = tmp_path / "events.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in good + [{**good[0], **r} for r, _ in bad]))
    report = run_import(store, "events", f, settings=settings)
    assert _reasons(report) == {GOOD + 1 + i: reason for i, (_, reason) in enumerate(bad)}
    assert report.tables["events"].inserted == GOOD


def test_an_event_far_in_the_future_is_a_bad_row(store: Store, settings: Settings, tmp_path: Path) -> None:
    """It would become its user's "now" (every trend window empty); a day ahead is allowed for clock skew."""
    from datetime import UTC, datetime, timedelta

    run_import(store, "items", _jsonl(tmp_path / "items.jsonl", []), settings=settings)
    soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    rows = [{"user_id": "u1", "item_id": f"ok{i}", "type": "view", "timestamp": 1704103200 + i} for i in range(GOOD)]
    rows += [{**rows[0], "timestamp": "2190-01-01T00:00:00"}, {**rows[0], "timestamp": soon}]
    f = tmp_path / "events.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run_import(store, "events", f, settings=settings)
    reasons = _reasons(report)
    assert list(reasons) == [GOOD + 1] and reasons[GOOD + 1].startswith(
        "timestamp 2190-01-01T00:00:00 is in the future (the clock says 20"), reasons
    assert report.tables["events"].inserted == GOOD + 1


def test_csv_prices(store: Store, settings: Settings, tmp_path: Path) -> None:
    """Every CSV value is text: "12.5" is a price, "-3" and "nan" are bad rows, and "" clears the stored price."""
    f = tmp_path / "items.csv"
    f.write_text("item_id,title,price\n" + "".join(f"ok{i},Mug,{i}\n" for i in range(GOOD))
                 + "a,Hat,12.5\nb,Cap,-3\nc,Bag,nan\nd,Gold,1e308\n")
    report = run_import(store, "items", f, settings=settings)
    assert _reasons(report) == {GOOD + 3: "price must be a non-negative number, got '-3'",
                                GOOD + 4: "price must be a non-negative number, got 'nan'",
                                GOOD + 5: "price 1e308 is out of range: at most 1e12"}  # ranking's price ratio: inf
    assert _stored(store)["a"][3] == 12.5
    feed = tmp_path / "prices.csv"
    feed.write_text("item_id,price\na,\nok1, 7 \n")
    run_import(store, "items", feed, settings=settings)
    assert _stored(store)["a"] == ("Hat", "", None, None) and _stored(store)["ok1"][3] == 7.0


# -- 4. where a JSON error is ------------------------------------------------------------------------------------
def test_a_json_error_names_its_column(store: Store, settings: Settings, tmp_path: Path) -> None:
    report = run_import(store, "items", _jsonl(tmp_path / "items.jsonl", ['{"item_id": "b", "title": "y",, }']),
                        settings=settings)
    assert _reasons(report) == {GOOD + 1: "invalid JSON (Expecting property name enclosed in double quotes at "
                                          "column 31)"}
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"item_id": "a", "title": "x"}\n{"item_id": "b", "title": "y')
    with pytest.raises(ImportFailed, match=r"cut.jsonl:2: the last line is cut off \(Unterminated string starting "
                                           r"at column 27\); the file looks truncated"):
        run_import(store, "items", cut, settings=settings)


def test_a_time_outside_what_utc_holds_is_a_bad_row(store: Store, settings: Settings, tmp_path: Path) -> None:
    """0001-01-01T00:00+05:00 is before year 1 once in UTC: it stopped the whole import with an OverflowError."""
    run_import(store, "items", _jsonl(tmp_path / "items.jsonl", []), settings=settings)
    rows = [{"user_id": "u1", "item_id": f"ok{i}", "type": "view", "timestamp": 1704103200 + i} for i in range(GOOD)]
    rows += [{**rows[0], "timestamp": "0001-01-01T00:00:00+05:00"}]
    f = tmp_path / "events.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run_import(store, "events", f, settings=settings)
    reasons = _reasons(report)
    assert list(reasons) == [GOOD + 1] and "out of range" in reasons[GOOD + 1], reasons
    assert report.tables["events"].inserted == GOOD
