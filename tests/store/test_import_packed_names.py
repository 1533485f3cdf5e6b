"""A compressed file under its usual name (items.csv.bz2, .zip, .xz, .zst) is refused at once with the command that
unpacks it, as the README says: it was told to "pass --format", which only led to a second error saying to unpack
it. A spreadsheet (a ZIP archive inside) is told to be saved as CSV, not to be unzipped."""

from __future__ import annotations

import bz2
import lzma
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.errors import ImportFailed
from recsys.store import Store
from recsys.store.importers import run_import
from recsys.store.importers.readers import read_any
from tests.conftest import run_main

TEXT = b"item_id,title\nz1,Packed\n"


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("items.csv", TEXT)


PACKERS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "items.csv.bz2": (lambda p: p.write_bytes(bz2.compress(TEXT)), "a bzip2 file", "bunzip2"),
    "items.csv.zip": (_zip, "a ZIP archive", "unzip"),
    "items.csv.xz": (lambda p: p.write_bytes(lzma.compress(TEXT)), "an xz file", "unxz"),
    "items.csv.zst": (lambda p: p.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 16), "a Zstandard file", "unzstd"),
}


@pytest.mark.parametrize("name", sorted(PACKERS))
def test_a_compressed_file_is_told_how_to_unpack_it_at_once(sqlite_store: Store, settings: Settings, tmp_path: Path,
                                                            name: str) -> None:
    pack, kind, tool = PACKERS[name]
    f = tmp_path / name
    pack(f)
    with pytest.raises(ImportFailed) as e:
        run_import(sqlite_store, "items", f, settings=settings)
    said = e.value.message
    assert said.startswith(f"{f}: {kind}, not text") and f"(`{tool}`)" in said, said
    assert "--format" not in said and "\n" not in said
    for fmt in ("csv", "parquet"):  # the same answer whatever format is named
        with pytest.raises(ImportFailed, match=f"\\(`{tool}`\\)"):
            sum(1 for _ in read_any(f, fmt))


def test_the_cli_says_it_in_one_line(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "items.csv.bz2"
    f.write_bytes(bz2.compress(TEXT))
    code, err = run_main(monkeypatch, capsys, "import", "items", str(f))
    said = [line for line in err.splitlines() if line.startswith("error")]  # after the progress line
    assert code != 0 and len(said) == 1 and "(`bunzip2`)" in said[0] and "--format" not in err, err


@pytest.mark.parametrize("name", ["items.xlsx", "items.ods"])
def test_a_spreadsheet_is_told_to_be_saved_as_csv(sqlite_store: Store, settings: Settings, tmp_path: Path,
                                                  name: str) -> None:
    f = tmp_path / name
    _zip(f)
    with pytest.raises(ImportFailed, match=r"a spreadsheet, .*Save the sheet as CSV") as e:
        run_import(sqlite_store, "items", f, settings=settings)
    assert "unzip" not in e.value.message


def test_a_plain_file_misnamed_as_compressed_still_gets_the_format_hint(sqlite_store: Store, settings: Settings,
                                                                        tmp_path: Path) -> None:
    f = tmp_path / "items.csv.bz2"  # not bzip2 at all: --format csv reads it
    f.write_bytes(TEXT)
    with pytest.raises(ImportFailed, match="pass --format"):
        run_import(sqlite_store, "items", f, settings=settings)
    run_import(sqlite_store, "items", f, fmt="csv", settings=settings)


@pytest.mark.parametrize("name", ["items.xls", "items.xlsx"])
def test_a_text_export_named_as_a_spreadsheet_imports_with_its_format(sqlite_store: Store, settings: Settings,
                                                                      tmp_path: Path, name: str) -> None:
    f = tmp_path / name  # legacy "Excel export" buttons write TSV under an .xls name
    f.write_bytes(TEXT.replace(b",", b"\t"))
    run_import(sqlite_store, "items", f, fmt="tsv", settings=settings)
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))  # a real one: refused
    with pytest.raises(ImportFailed, match=r"a spreadsheet, .*Save the sheet as CSV"):
        run_import(sqlite_store, "items", tmp_path / "old.xls", fmt="tsv", settings=settings)


def test_a_csv_starting_with_the_letters_bzh_is_text(sqlite_store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_bytes(b"BZh_sku,title\nx1,Red dress\n")  # "BZh" alone is no bzip2 header
    run_import(sqlite_store, "items", f, mapping={"item_id": "BZh_sku"}, settings=settings)
    assert bz2.compress(b"a").startswith(b"BZh") and bz2.compress(b"").startswith(b"BZh")
    for data in (b"a", b""):  # a real stream, and an empty one, are still named
        (tmp_path / "p.csv").write_bytes(bz2.compress(data))
        with pytest.raises(ImportFailed, match="a bzip2 file"):
            run_import(sqlite_store, "items", tmp_path / "p.csv", settings=settings)
