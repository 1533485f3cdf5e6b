"""Inputs that used to go wrong quietly or with a traceback: typed Parquet columns, a users file with some columns, a
column named twice, a report that cannot be written after the commit, UTF-16 and other encodings, and events on
deleted items."""

from __future__ import annotations

import shlex
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select, update

from recsys.config import Settings
from recsys.errors import ImportFailed
from recsys.store import Event, Item, Store, User
from recsys.store.importers import run_import


def _items(store: Store) -> dict[str, tuple[str, dict[str, Any]]]:
    with store.session() as s:
        return {i: (t, a) for i, t, a in s.execute(select(Item.external_id, Item.title, Item.attributes))}


def _users(store: Store) -> dict[str, dict[str, Any]]:
    with store.session() as s:
        return {u: a for u, a in s.execute(select(User.external_id, User.attributes))}


def test_typed_parquet_columns_become_json_values(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.parquet"
    pq.write_table(pa.table({
        "item_id": ["p1", "p2"],
        "title": ["Hat", "Cap"],
        "launched": pa.array([date(2024, 3, 1), None], pa.date32()),
        "seen": pa.array([datetime(2024, 3, 1, 12, 30), datetime(2024, 3, 2)], pa.timestamp("us")),
        "seen_utc": pa.array([datetime(2024, 3, 1, 12, 30, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
        "weight": pa.array([Decimal("1.25"), Decimal("2.50")], pa.decimal128(5, 2)),
    }), f)
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].inserted == 2 and report.bad_rows == []
    assert _items(store)["p1"][1] == {"launched": "2024-03-01", "seen": "2024-03-01T12:30:00",
                                      "seen_utc": "2024-03-01T12:30:00+00:00", "weight": 1.25}
    users = tmp_path / "users.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "born": pa.array([date(1990, 5, 17)], pa.date32())}), users)
    run_import(store, "users", users, settings=settings)
    assert _users(store) == {"u1": {"born": "1990-05-17"}}


def test_a_binary_parquet_column_skips_its_rows_naming_it(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": [f"b{i}" for i in range(20)], "title": ["T"] * 20,
                             "blob": pa.array([b"\x89PNG"] + [None] * 19, pa.binary())}), f)
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].inserted == 19
    assert [(b.line, b.reason) for b in report.bad_rows] == [
        (1, "attribute 'blob' is binary data (4 bytes), which an attribute cannot hold: leave the column out, or "
            "convert it to text (base64, say) before importing")]


def test_a_users_file_with_some_columns_keeps_the_others(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "users.csv"
    f.write_text("user_id,age,club\nu1,31,gold\nu2,40,silver\nu3,50,bronze\n")
    run_import(store, "users", f, settings=settings)
    f.write_text("user_id,age\nu1,32\n")
    assert run_import(store, "users", f, settings=settings).tables["users"].updated == 1
    f.write_text("user_id\nu2\n")  # registering known ids changes nothing
    assert run_import(store, "users", f, settings=settings).tables["users"].unchanged == 1
    f.write_text("user_id,club\nu3,\n")  # an empty cell clears its attribute
    run_import(store, "users", f, settings=settings)
    jl = tmp_path / "users.jsonl"
    jl.write_text('{"user_id": "u1", "tier": 2}\n{"user_id": "u4", "age": 20}\n')
    run_import(store, "users", jl, settings=settings)
    assert _users(store) == {"u1": {"age": "32", "club": "gold", "tier": 2}, "u2": {"age": "40", "club": "silver"},
                             "u3": {"age": "50"}, "u4": {"age": 20}}


def test_a_column_named_twice_is_refused(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_text("item_id,title,price\ni1,Good title,10\n")
    run_import(store, "items", f, settings=settings)
    f.write_text("item_id,title,price,title\ni1,New title,12,\n")
    with pytest.raises(ImportFailed, match=r"items.csv:1: the header names a column more than once \('title' as "
                                           r"columns 2, 4\).*Rename or remove the extra column"):
        run_import(store, "items", f, settings=settings)
    pf = tmp_path / "items.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["i1"]), pa.array(["A"]), pa.array(["B"])],
                                        names=["item_id", "title", "title"]), pf)
    with pytest.raises(ImportFailed, match=r"names column\(s\) \['title'\] more than once"):
        run_import(store, "items", pf, settings=settings)
    jl = tmp_path / "items.jsonl"
    jl.write_text('{"item_id": "i2", "title": "A", "title": ""}\n{"item_id": "i3", "title": "C"}\n')
    report = run_import(store, "items", jl, settings=settings)
    assert [(b.line, b.reason) for b in report.bad_rows] == [
        (1, "key 'title' is given twice in one object: which value is meant is a guess; keep one")]
    assert {i: t for i, (t, _) in _items(store).items()} == {"i1": "Good title", "i3": "C"}


def test_a_report_that_cannot_be_written_after_the_commit_is_a_note(store: Store, settings: Settings,
                                                                   tmp_path: Path) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / "reports").write_text("a file where the folder goes: a full disk, a read-only folder")
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\ni1,Hat\n")
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].inserted == 1 and report.written_to is None
    assert len(report.notes) == 1
    assert "the rows were imported (committed), but this report of the import could not be written" in \
        report.notes[0]
    assert _items(store)["i1"][0] == "Hat"
    (settings.home / "reports").unlink()
    again = run_import(store, "items", f, settings=settings)
    assert again.written_to is not None and again.written_to.parent == settings.home / "reports"
    assert [p.name for p in again.written_to.parent.iterdir()] == [again.written_to.name]  # no temporary left


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_a_file_with_a_utf16_or_utf32_byte_order_mark_is_read_in_it(store: Store, settings: Settings,
                                                                    tmp_path: Path, codec: str) -> None:
    text = "item_id\ttitle\r\nx1\tCafé crème\r\nx2\t€ sign\r\n"
    f = tmp_path / "items.tsv"  # Excel's "Unicode text": UTF-16 with its mark, tab separated
    f.write_bytes(("\ufeff" + text).encode(codec) if codec.endswith("-be") else text.encode(codec))
    report = run_import(store, "items", f, settings=settings)
    assert report.notes == [] and report.bad_rows == []
    assert {i: t for i, (t, _) in _items(store).items()} == {"x1": "Café crème", "x2": "€ sign"}
    jl = tmp_path / "items.jsonl"
    jl.write_bytes('{"item_id": "x3", "title": "Ünï"}\n'.encode(codec if codec != "utf-16-be" else "utf-16"))
    run_import(store, "items", jl, settings=settings)
    assert _items(store)["x3"][0] == "Ünï"


def test_another_encoding_is_refused_with_the_line_that_converts_it(store: Store, settings: Settings,
                                                                     tmp_path: Path) -> None:
    f = tmp_path / "my items.csv"
    f.write_bytes("item_id,title\nl1,Café\n".encode("cp1252"))
    converted = shlex.quote(str(tmp_path / "my items.utf8.csv"))
    with pytest.raises(ImportFailed) as e:
        run_import(store, "items", f, settings=settings)
    assert "my items.csv:2: not valid utf-8 text" in str(e.value)
    assert f"`iconv -f CP1252 -t UTF-8 {shlex.quote(str(f))} > {converted}` and import {converted}" in str(e.value)
    for text in ("item_id,title\nl1,Cafe\n", "item_id,title\nl1,Café\n"):  # NUL bytes, or not utf-8 either
        f.write_bytes(text.encode("utf-16-le"))  # no byte-order mark
        with pytest.raises(ImportFailed, match=r"looks like UTF-16 text without its byte-order mark.*"
                                               r"iconv -f UTF-16LE"):
            run_import(store, "items", f, settings=settings)
    assert _items(store) == {}


def test_events_on_deleted_items_are_stored_with_a_note(store: Store, settings: Settings, tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,One\ni2,Two\n")
    run_import(store, "items", items, settings=settings)
    with store.session() as s:
        s.execute(update(Item).where(Item.external_id == "i2").values(deleted=True))
    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,type,timestamp\nu1,i1,view,2024-01-01\nu1,i2,view,2024-01-01\n"
                 "u2,i2,click,2024-01-02\n")
    report = run_import(store, "events", f, settings=settings)
    c = report.tables["events"]
    assert (c.inserted, c.skipped, c.deleted_items) == (3, 0, 2)
    assert report.notes == [f"{f}:3: 2 stored event(s) name deleted items ('i2'): they are kept in the users' "
                            "histories, the items are never shown (importing an item with its title, or a PUT of it, "
                            "brings it back)"]
    with store.session() as s:
        assert s.scalar(select(Event.id).where(Event.item_id == s.scalar(select(Item.id).where(
            Item.external_id == "i2")))) is not None
    again = run_import(store, "events", f, settings=settings)  # nothing stored again: nothing to say again
    assert again.tables["events"].deleted_items == 0 and again.notes == []


def test_a_value_json_cannot_hold_that_gets_past_the_checks_fails_with_a_message(
        store: Store, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the safety net behind the row checks: the database layer's TypeError is an import_failed, never a traceback
    from recsys.store.importers import generic, records

    monkeypatch.setattr(generic, "json_value", lambda v, what: v)
    monkeypatch.setattr(records, "check_attributes", lambda attrs: None)
    f = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": ["d1"], "launched": pa.array([date(2024, 3, 1)], pa.date32())}), f)
    with pytest.raises(ImportFailed, match=r"items.parquet: the database refused a value \(Object of type date is "
                                           r"not JSON serializable\); nothing was imported"):
        run_import(store, "items", f, settings=settings)
    assert _items(store) == {}
