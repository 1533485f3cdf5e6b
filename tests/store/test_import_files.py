"""How the importers read whole files: byte-order marks, quoting, a last row without its line break, JSON arrays,
unnamed columns and ``--map`` over a file that has the canonical column already."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.errors import ImportFailed
from recsys.store import Event, Item, Store
from recsys.store.importers import run_import
from tests.store.fixtures import write_movielens


def _titles(store: Store) -> dict[str, str]:
    with store.session() as s:
        return {i: t for i, t in s.execute(select(Item.external_id, Item.title))}


def test_a_quoted_header_after_a_byte_order_mark(store: Store, settings: Settings, tmp_path: Path) -> None:
    # R's write.csv and pandas' QUOTE_ALL quote the header: the mark sat before the quote, "item_id" was not found
    f = tmp_path / "items.csv"
    f.write_bytes(b'\xef\xbb\xbf"item_id","title"\r\n"b1","Green hat"\r\n')
    run_import(store, "items", f, settings=settings)
    assert _titles(store) == {"b1": "Green hat"}


def test_a_last_row_without_its_line_break_is_imported_with_a_note(store: Store, settings: Settings,
                                                                   tmp_path: Path) -> None:
    # a file cut inside its last field still has the right number of fields: it cannot be told from a complete
    # one, so the report says where to look instead of staying silent
    f = tmp_path / "items.csv"
    f.write_text("item_id,title,category\na1,Red dress,dresses\na2,Blue shirt,shi")
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].inserted == 2
    assert report.notes == [f"{f}:3: the file does not end with a line break: if it was cut off, its last row is cut "
                            "short too (it was imported; check it)"]
    f.write_text("item_id,title,category\na1,Red dress,dresses\n")
    assert run_import(store, "items", f, settings=settings).notes == []


def test_where_an_unclosed_quote_opened(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\na0,Hat\n" + 'a1,"Cap\n' + "".join(f"b{i},Scarf\n" for i in range(40)))
    with pytest.raises(ImportFailed, match=r"items.csv:3: a quote opened in the row starting here is never closed"):
        run_import(store, "items", f, settings=settings)
    assert _titles(store) == {}


def test_a_quote_inside_an_unquoted_tsv_field_says_how_to_write_it(store: Store, settings: Settings,
                                                                   tmp_path: Path) -> None:
    f = tmp_path / "items.tsv"
    f.write_text('item_id\ttitle\nt0\tPlain\nt1\t"Weird" Al Show\n')
    with pytest.raises(ImportFailed, match=r"items.tsv:3: a field starts with a quote that closes before the field "
                                           r"ends .*Quote the whole field"):
        run_import(store, "items", f, settings=settings)


def test_movielens_files_have_no_quoting(store: Store, settings: Settings, tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    text = (root / "u.item").read_bytes().replace(b"Toy Story (1995)", b'"Weird" Toy Story (1995)')
    (root / "u.item").write_bytes(text)
    run_import(store, "movielens", root, settings=settings)
    assert _titles(store)["1"] == '"Weird" Toy Story (1995)'


def test_a_json_array_is_named_as_such(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.json"
    f.write_text('[\n  {"item_id": "a", "title": "Hat"},\n  {"item_id": "b", "title": "Cap"}\n]')
    with pytest.raises(ImportFailed,
                       match=r"a JSON array; `recsys import` reads JSON Lines.*"
                             r"jq -c '\.\[\]' \S*items.json > \S*items.jsonl"):
        run_import(store, "items", f, settings=settings)


def test_the_jq_line_for_a_json_array_never_writes_over_its_input(store: Store, settings: Settings,
                                                                  tmp_path: Path) -> None:
    f = tmp_path / "my items.jsonl"  # the usual case: an array saved under the JSON Lines name
    f.write_text('[{"item_id": "a", "title": "Hat"}]')
    with pytest.raises(ImportFailed) as e:
        run_import(store, "items", f, settings=settings)
    line = str(e.value).split("`")[-2]
    src, dst = shlex.split(line.split(" > ")[0])[-1], shlex.split(line.split(" > ")[1])[0]
    assert src == str(f) and dst == str(tmp_path / "my items.lines.jsonl"), line


def test_json_lines_with_a_cut_last_line_and_blank_lines(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.jsonl"
    f.write_text('{"item_id": "a", "title": "Hat"}\n\n{"item_id": "b", "title": "Cap"}\n{"item_id": "c", "ti')
    with pytest.raises(ImportFailed, match=r"items.jsonl:4: the last line is cut off"):
        run_import(store, "items", f, settings=settings)
    f.write_text('{"item_id": "a", "title": "Hat"}\n\n{"item_id": "b", "title": "Cap"}\nnot json\n')
    report = run_import(store, "items", f, settings=settings)  # not the last line of a cut file: a bad row
    assert [(b.line, b.reason[:12]) for b in report.bad_rows] == [(4, "invalid JSON")]
    assert _titles(store) == {"a": "Hat", "b": "Cap"}


def test_an_unnamed_column_is_left_out_with_a_note(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_text(",item_id,title\n0,pd1,Hat\n1,pd2,Cap\n")  # DataFrame.to_csv() with its index
    report = run_import(store, "items", f, settings=settings)
    assert report.notes and "column(s) [1] have no name" in report.notes[0]
    with store.session() as s:
        assert s.scalar(select(Item.attributes).where(Item.external_id == "pd2")) == {}


def test_map_onto_a_column_the_file_already_has_is_refused(store: Store, settings: Settings, tmp_path: Path) -> None:
    # the mapped column won or lost by the columns' order
    f = tmp_path / "items.csv"
    f.write_text("sku,item_id,title\nSKU-1,legacy-1,Hat\n")
    with pytest.raises(ImportFailed, match=r"--map item_id=sku, but the file has a 'item_id' column of its own"):
        run_import(store, "items", f, settings=settings, mapping={"item_id": "sku"})
    run_import(store, "items", f, settings=settings, mapping={"item_id": "sku", "legacy_id": "item_id"})
    with store.session() as s:
        assert s.scalar(select(Item.attributes).where(Item.external_id == "SKU-1")) == {"legacy_id": "legacy-1"}


def test_one_column_may_feed_two_fields(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_text("id,name\nh1,Green hat\n")
    run_import(store, "items", f, settings=settings, mapping={"item_id": "id", "title": "name", "description": "name"})
    with store.session() as s:
        assert s.execute(select(Item.title, Item.description)).one() == ("Green hat", "Green hat")


def test_events_cut_in_their_last_timestamp_are_flagged(store: Store, settings: Settings, tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    (root / "u.data").write_text("1\t1\t5\t881250949\n1\t2\t3\t8812")  # cut: 1970, but a valid number
    report = run_import(store, "movielens", root, settings=settings)
    assert any("u.data:2: the file does not end with a line break" in n for n in report.notes)
    with store.session() as s:
        assert s.scalar(select(Event.id).limit(1)) is not None
