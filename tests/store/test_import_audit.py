"""Imports as the audit of own data found them: gzip files read as they stream (not refused as Windows-1252 text
with an ``iconv`` line), a CSV delimited by ';' or '|' (``--delimiter``), a full disk said as such (not "start the
server"), and an id repeated anywhere in a file counted as a repeated id (not "updated" for a row the import
inserted). Batches of two rows put every repeat in another batch."""

from __future__ import annotations

import gzip
import logging
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, select
from typer.testing import CliRunner

from recsys.api.errors import public_message, wait_headers
from recsys.cli import app
from recsys.config import Settings, get_settings
from recsys.errors import DiskFull, ImportFailed
from recsys.store import Item, Store, User
from recsys.store.importers import repeats, run_import
from recsys.store.importers.readers import read_any
from recsys.store.importers.report import TableCounts
from recsys.store.media_roots import FILE, record_media_root

ITEMS = "item_id,title,price\na1,Red dress,1.5\na2,Blue shirt,abc\n" + '"a3","Long\ncoat",3\n' + "a4,Hat,4\n"
"""Line 3 is a bad row; a3's quoted title spans lines 4-5, so a4 is on line 6."""


def _batches(settings: Settings, n: int = 2) -> Settings:
    return settings.model_copy(update={"store": settings.store.model_copy(update={"batch_size": n})})


def _titles(store: Store) -> dict[str, str]:
    with store.session() as s:
        return {i: t for i, t in s.execute(select(Item.external_id, Item.title))}


def _gzip(path: Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    path.write_bytes(gzip.compress(data.encode(encoding) if isinstance(data, str) else data))
    return path


def _counts(c: TableCounts) -> tuple[int, ...]:
    return c.read, c.inserted, c.updated, c.unchanged, c.skipped, c.repeated


# -- D1: gzip ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text"), [
    ("items.csv.gz", ITEMS),
    ("items.tsv.gz", ITEMS.replace(",", "\t")),
    ("items.jsonl.gz", '{"item_id": "a1", "title": "Red dress"}\n\n{"item_id": "a2", "price": "abc"}\n'
                       '{"item_id": "a3", "title": "Long\\ncoat"}\n\n{"item_id": "a4", "title": "Hat"}\n'),
])
def test_a_gzip_file_is_read_like_the_plain_one(store: Store, settings: Settings, tmp_path: Path, name: str,
                                                text: str) -> None:
    f = _gzip(tmp_path / name, text)
    report = run_import(store, "items", f, settings=settings)
    assert [(b.line, b.reason) for b in report.bad_rows] == [(3, "price must be a non-negative number, got 'abc'")]
    assert _titles(store) == {"a1": "Red dress", "a3": "Long\ncoat", "a4": "Hat"}
    plain = tmp_path / name.removesuffix(".gz")
    plain.write_text(text)
    again = run_import(store, "items", plain, settings=settings)
    assert [(b.line, b.reason) for b in again.bad_rows] == [(b.line, b.reason) for b in report.bad_rows]
    assert again.tables["items"].unchanged == 3


def test_a_gzip_file_is_told_by_its_magic_bytes(sqlite_store: Store, settings: Settings, tmp_path: Path) -> None:
    named_csv = _gzip(tmp_path / "items.csv", "item_id,title\nc1,Cap\n")  # compressed, named as plain text
    run_import(sqlite_store, "items", named_csv, settings=settings)
    export = _gzip(tmp_path / "export.gz", "item_id,title\nc2,Coat\n")
    with pytest.raises(ImportFailed, match=r"cannot tell the format of this gzip file from its name .*--format csv"):
        run_import(sqlite_store, "items", export, settings=settings)
    run_import(sqlite_store, "items", export, settings=settings, fmt="csv")
    assert _titles(sqlite_store) == {"c1": "Cap", "c2": "Coat"}


def test_text_in_a_gzip_file_keeps_its_byte_order_mark_and_line_numbers(sqlite_store: Store, settings: Settings,
                                                                       tmp_path: Path) -> None:
    utf16 = _gzip(tmp_path / "items.tsv.gz", "\ufeff" + ITEMS.replace(",", "\t").replace("\n", "\r\n"), "utf-16-le")
    report = run_import(sqlite_store, "items", utf16, settings=settings)
    assert [b.line for b in report.bad_rows] == [3]
    assert _titles(sqlite_store)["a4"] == "Hat"
    cut = _gzip(tmp_path / "more.csv.gz", "\ufeffitem_id,title\nb1,Bag\nb2,Belt")  # UTF-8 mark, no last line break
    notes = run_import(sqlite_store, "items", cut, settings=settings).notes
    assert notes == [f"{cut}:3: the file does not end with a line break: if it was cut off, its last row is cut short "
                     "too (it was imported; check it)"]
    assert _titles(sqlite_store)["b1"] == "Bag"


def test_a_gzip_file_is_streamed(tmp_path: Path) -> None:
    # about 6 MB of text: read whole (or decompressed at once) it would be in memory many times over
    f = _gzip(tmp_path / "items.csv.gz", "item_id,title\n" + "".join(f"i{i},{'t' * 100}\n" for i in range(60_000)))
    tracemalloc.start()
    try:
        rows = sum(1 for _ in read_any(f))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 60_000
    assert peak < 2_000_000, peak


def test_a_cut_off_gzip_file_says_so(sqlite_store: Store, settings: Settings, tmp_path: Path) -> None:
    whole = gzip.compress(("item_id,title\n" + "".join(f"i{i},T{i}\n" for i in range(2000))).encode())
    f = tmp_path / "items.csv.gz"
    f.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImportFailed, match=r"the gzip data is cut off or corrupt .*nothing was imported") as e:
        run_import(sqlite_store, "items", f, settings=settings)
    assert "iconv" not in e.value.message
    assert _titles(sqlite_store) == {}


def test_a_cut_off_gzip_file_with_a_bad_last_line_names_the_line(tmp_path: Path) -> None:
    """Finding the undecodable line read the stream again, to its cut: a bare EOFError escaped."""
    plain = ("item_id,title\n" + "".join(f"i{i},T{i}\n" for i in range(3000))).encode() + b"bad,\xff" + b"z" * 5000
    whole = gzip.compress(plain)
    f = tmp_path / "items.csv.gz"
    f.write_bytes(whole[: len(whole) - 40])
    with pytest.raises(ImportFailed, match=r"items\.csv\.gz:3002: not valid utf-8"):
        sum(1 for _ in read_any(f))


def test_gzip_text_in_another_encoding_says_gunzip_then_iconv(sqlite_store: Store, settings: Settings,
                                                              tmp_path: Path) -> None:
    f = _gzip(tmp_path / "items.csv.gz", "item_id,title\nc1,Caf\xe9\n", "cp1252")
    with pytest.raises(ImportFailed) as e:
        run_import(sqlite_store, "items", f, settings=settings)
    out = tmp_path / "items.utf8.csv"
    assert f"`gunzip -c {f} | iconv -f CP1252 -t UTF-8 > {out}` and import {out}" in e.value.message, e.value.message


def test_a_file_that_cannot_be_read_as_it_streams_says_gunzip_it_first(sqlite_store: Store, settings: Settings,
                                                                       tmp_path: Path) -> None:
    f = _gzip(tmp_path / "items.parquet.gz", b"PAR1 not really")
    with pytest.raises(ImportFailed, match=r"items.parquet.gz: a gzip file: gunzip it first") as e:
        run_import(sqlite_store, "items", f, settings=settings)
    assert f"`gunzip -c {f} > {tmp_path / 'items.parquet'}`" in e.value.message
    z = tmp_path / "items.csv"  # a ZIP archive under a text name: binary, no iconv line can help
    with zipfile.ZipFile(z, "w") as archive:
        archive.writestr("items.csv", "item_id,title\nz1,Zip\n")
    with pytest.raises(ImportFailed, match=r"items.csv: a ZIP archive, not text; .*\(`unzip`\)") as e:
        run_import(sqlite_store, "items", z, settings=settings)
    assert "iconv" not in e.value.message


# -- D2: another delimiter; the header checked whatever the first row ------------------------------------------------

@pytest.mark.parametrize("sep", [";", "|"])
@pytest.mark.parametrize("price", ["1,5", "1.5"], ids=["decimal-comma", "decimal-point"])
def test_a_header_of_one_column_names_the_delimiter_the_file_seems_to_use(sqlite_store: Store, settings: Settings,
                                                                          tmp_path: Path, sep: str,
                                                                          price: str) -> None:
    f = tmp_path / "items.csv"
    f.write_text(f"item_id{sep}title{sep}price\ns1{sep}Alpha{sep}{price}\ns2{sep}Beta{sep}2\n")
    with pytest.raises(ImportFailed) as e:
        run_import(sqlite_store, "items", f, settings=settings)
    assert f"seems to be delimited by '{sep}', not ','" in e.value.message, e.value.message
    assert f"--delimiter '{sep}'" in e.value.message and "--map" not in e.value.message
    if price == "1.5":
        report = run_import(sqlite_store, "items", f, settings=settings, delimiter=sep)
        assert report.tables["items"].inserted == 2
        assert _titles(sqlite_store) == {"s1": "Alpha", "s2": "Beta"}


def test_the_delimiter_is_for_csv_files_and_one_character(sqlite_store: Store, settings: Settings,
                                                          tmp_path: Path) -> None:
    f = tmp_path / "items.jsonl"
    f.write_text('{"item_id": "j1"}\n')
    with pytest.raises(ImportFailed, match=r"--delimiter is for CSV files; .* is read as jsonl"):
        run_import(sqlite_store, "items", f, settings=settings, delimiter=";")
    f.write_text("item_id,title\nc1,Cap\n")
    with pytest.raises(ImportFailed, match=r"seems to be delimited by ',', not ';'. Nothing was imported; leave out "
                                           r"--delimiter$"):
        run_import(sqlite_store, "items", f, settings=settings, fmt="csv", delimiter=";")
    with pytest.raises(ImportFailed, match=r"--delimiter takes one character"):
        run_import(sqlite_store, "items", tmp_path / "items.jsonl", settings=settings, fmt="csv", delimiter=";;")


def test_the_delimiter_option_of_the_import_commands(tmp_path: Path) -> None:
    items, users = tmp_path / "items.csv", tmp_path / "users.csv"
    items.write_text("item_id;title\ns1;Alpha\n")
    users.write_text("user_id|age\nu1|30\n")
    env = {"RECSYS_HOME": str(tmp_path / "home")}
    get_settings.cache_clear()  # RECSYS_HOME is read once per process otherwise
    try:
        out = CliRunner().invoke(app, ["import", "items", str(items), "--delimiter", ";"], env=env)
        assert out.exit_code == 0 and "items: read 1, inserted 1" in out.output, out.output
        out = CliRunner().invoke(app, ["import", "users", str(users), "--delimiter", "|"], env=env)
        assert out.exit_code == 0 and "users: read 1, inserted 1" in out.output, out.output
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(("name", "text"), [
    ("items.csv", "sku,title\nn1,X,extra\nn2,Y\n"),
    ("items.jsonl", '{"sku": "n1", \n{"sku": "n2", "title": "Y"}\n'),
])
def test_the_columns_are_checked_though_the_first_row_is_bad(sqlite_store: Store, settings: Settings,
                                                             tmp_path: Path, name: str, text: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ImportFailed, match=r"no item_id column \(its columns: \['sku', 'title'\]\); rename it or "
                                           r"map it with --map item_id=COLUMN"):
        run_import(sqlite_store, "items", f, settings=settings)
    with pytest.raises(ImportFailed, match=r"--map names column\(s\) \['code'\] that the file does not have"):
        run_import(sqlite_store, "items", f, settings=settings, mapping={"item_id": "code"})


# -- D3: a full disk -------------------------------------------------------------------------------------------------

def test_a_full_disk_is_said_so_and_nothing_is_imported(sqlite_store: Store, settings: Settings,
                                                        tmp_path: Path) -> None:
    sqlite_store.engine.dispose()  # new connections get the cap below

    @event.listens_for(sqlite_store.engine, "connect")
    def _cap(conn: Any, _record: Any) -> None:  # SQLite's own SQLITE_FULL, as a full disk gives it
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + 4}")

    f = tmp_path / "items.csv"
    f.write_text("item_id,title\n" + "".join(f"i{i},{'x' * 200}\n" for i in range(300)))
    with pytest.raises(DiskFull) as e:
        run_import(sqlite_store, "items", f, settings=settings)
    assert e.value.code == "disk_full" and e.value.status == 507
    assert e.value.message.startswith(f"{f}: nothing was imported: the disk holding {tmp_path} is full"), e.value
    assert "Free space there and run it again" in e.value.message
    assert "start it" not in e.value.message and "unreachable" not in e.value.message
    assert _titles(sqlite_store) == {}


def test_a_full_disk_on_postgres_is_said_so() -> None:
    store = Store("postgresql+psycopg://app@127.0.0.1:5432/shop")  # never connects
    try:
        e = store.unavailable(psycopg.errors.lookup("53100")('could not extend file "base/1/2": No space left on '
                                                              "device"))
    finally:
        store.dispose()
    assert isinstance(e, DiskFull) and "is full on the server" in e.message and "start it" not in e.message


def test_the_api_answers_a_full_disk_with_507_and_no_retry_after() -> None:
    e = DiskFull("the disk holding /srv/recsys is full")
    said = public_message(e)
    assert "disk is full" in said and "unreachable" not in said and "/srv" not in said
    assert wait_headers(None, e, e.status) == {}  # type: ignore[arg-type]  # a 507: waiting does not heal it


def test_a_full_temporary_directory_is_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repeats, "IN_MEMORY", 1)
    kept = repeats.SpillingMap()
    try:
        kept.put_many({"a": 1, "b": 2})  # past IN_MEMORY: in the temporary database now
        db = kept._db
        assert db is not None
        db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(DiskFull, match=r"the temporary directory \S+ is full \(database or disk is full\)"):
            kept.put_many({f"k{i}" * 20: i for i in range(2000)})
    finally:
        kept.close()


def test_a_media_root_that_cannot_be_recorded_leaves_no_temporary_file(settings: Settings, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / FILE).mkdir()  # a file that cannot be replaced, as a full disk cannot be written
    photos = tmp_path / "shop"
    photos.mkdir()
    with caplog.at_level(logging.WARNING, logger="recsys.store.media_roots"):
        record_media_root(settings, photos / "items.csv")
    assert not (settings.home / FILE).with_suffix(".tmp").exists()
    said = caplog.records[-1].getMessage()
    assert f"""set RECSYS_API__MEDIA_ROOTS='["{photos}"]' to serve its photos""" in said, said


# -- D4: repeated ids wherever they lie ------------------------------------------------------------------------------

@pytest.mark.parametrize("in_memory", [None, 1], ids=["ids-in-memory", "ids-on-disk"])
def test_an_item_id_repeated_in_another_batch_is_a_repeated_id(store: Store, settings: Settings, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               in_memory: int | None) -> None:
    if in_memory is not None:  # past this many distinct ids they move to a temporary file
        monkeypatch.setattr(repeats, "IN_MEMORY", in_memory)
    small = _batches(settings)
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\ndup,First\na,A\nb,B\ndup,Second\n")  # batches [dup, a], [b, dup]
    assert _counts(run_import(store, "items", f, settings=small).tables["items"]) == (4, 3, 0, 0, 0, 1)
    assert _titles(store)["dup"] == "Second"
    # the same file again: dup is written "First" on the way, but the file leaves it as it was
    assert _counts(run_import(store, "items", f, settings=small).tables["items"]) == (4, 0, 0, 3, 0, 1)
    assert _counts(run_import(store, "items", f, settings=settings).tables["items"]) == (4, 0, 0, 3, 0, 1)
    f.write_text("item_id,title\ndup,Third\na,A\nb,B\ndup,Fourth\n")
    assert _counts(run_import(store, "items", f, settings=small).tables["items"]) == (4, 0, 1, 2, 0, 1)
    assert _titles(store)["dup"] == "Fourth"


def test_a_user_id_repeated_in_another_batch_is_a_repeated_id(store: Store, settings: Settings,
                                                              tmp_path: Path) -> None:
    small = _batches(settings)
    f = tmp_path / "users.csv"
    f.write_text("user_id,city\nu1,Oslo\nu2,Rome\nu3,Kyiv\nu1,Lima\nu1,Pune\n")  # u1 in each of three batches
    assert _counts(run_import(store, "users", f, settings=small).tables["users"]) == (5, 3, 0, 0, 0, 2)
    with store.session() as s:
        assert s.execute(select(User.attributes).where(User.external_id == "u1")).scalar() == {"city": "Pune"}
    assert _counts(run_import(store, "users", f, settings=small).tables["users"]) == (5, 0, 0, 3, 0, 2)
