"""Streaming readers for CSV, JSONL and Parquet that know their line numbers.

A malformed row is reported (``BadLine``) and reading goes on; what the report should say of a file that was read
is a ``Note``; a file that cannot be read at all (undecodable bytes, an unterminated quote, a truncated last line, a
JSON array for JSON Lines, a broken Parquet footer, a column named twice) raises :class:`ImportFailed` naming the
file and the line, so the caller's transaction rolls back and the store stays as it was. Text is UTF-8, or what a
byte-order mark says; a gzip file is read through gzip as it streams (:mod:`recsys.store.importers.encodings`).
"""

from __future__ import annotations

import csv
import json
import shlex
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.errors import ImportFailed
from recsys.store.importers.encodings import (
    GZIP_ERRORS,
    TextEncoding,
    first_undecodable_line,
    gunzip_first,
    is_gzip,
    nul_bytes,
    open_text,
    packed,
    spreadsheet_bytes,
    text_encoding,
    undecodable,
    unpacked_name,
)

MAX_DEPTH = 8
"""The deepest nesting a record's values may have (attributes are shown, filtered on and sent back as JSON)."""

CSV_FIELD_LIMIT = 10_000_000
"""Far past any field's own limit (:mod:`recsys.store.limits`), which a longer field fails as a bad row; one longer
than this stops the file: resuming the csv reader inside a quoted field would read its text as rows."""
csv.field_size_limit(CSV_FIELD_LIMIT)


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


@dataclass(frozen=True)
class Note:
    """Something the import report should say about a file that is not a bad row (the rows were read)."""
    line: int
    text: str


Row = tuple[int, dict[str, Any]]
Read = Row | BadLine | Note
OnHeader = Callable[[list[str]], None]
"""Called with a file's column names once its header is read, before any row (it may raise ImportFailed)."""
DELIMITERS = {";": "';'", "|": "'|'", "\t": "tabs", ",": "','"}
"""Delimiters a one-column header may betray, as messages name them."""


def _to_lines(path: Path) -> str:
    """The command that converts a JSON array file to JSON Lines, into a file that is never the input itself
    (``jq ... x.jsonl > x.jsonl`` empties the file before jq reads it)."""
    plain = unpacked_name(path)
    out = plain.with_name(f"{plain.stem}.lines.jsonl" if plain.suffix == ".jsonl" else f"{plain.stem}.jsonl")
    src, dst = shlex.quote(str(path)), shlex.quote(str(out))
    if is_gzip(path):  # jq reads no gzip
        return f"`gunzip -c {src} | jq -c '.[]' > {dst}` and import {dst}"
    return f"`jq -c '.[]' {src} > {dst}` and import that file"


def _open_text(path: Path, enc: TextEncoding) -> Any:
    try:
        return open_text(path, enc)
    except OSError as e:
        raise ImportFailed(f"{path}: cannot open ({e.strerror or e}); check the path and permissions") from e


class _Lines:
    """A text file's lines, remembering the last one read: whether the file ends with a line break is known once
    it is read (a gzip stream cannot be read from its end)."""

    def __init__(self, f: Any) -> None:
        self._f = iter(f)
        self.last = ""

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        self.last = next(self._f)
        return self.last

    @property
    def complete(self) -> bool:
        """Whether what was read ends with a line break (an empty file does)."""
        return not self.last or self.last[-1] in "\r\n"


def _gzip_broken(path: Path, line: int, e: BaseException) -> str:
    why = str(e) or type(e).__name__
    return (f"{path}:{line}: the gzip data is cut off or corrupt ({why}); nothing was imported. Copy the file again "
            "(`gzip -t` checks a copy)")


def _checked_header(path: Path, header: list[str], required: tuple[str, ...], delimiter: str) -> list[str]:
    """The header's names, trimmed; ImportFailed for a one-column header that holds another delimiter, a required
    column it lacks or a name it gives twice (a row would keep the last column of the name, losing the other's
    values without a word)."""
    header = [h.strip() for h in header]
    other = [d for d in DELIMITERS if len(header) == 1 and d != delimiter and d in header[0]]
    if other:  # Excel saves ';' in much of Europe: every row would be one field, or a field count off
        fix = {"\t": "pass --format tsv", ",": "pass --format csv" if delimiter == "\t" else "leave out --delimiter"
               }.get(other[0], f"pass --delimiter {shlex.quote(other[0])}, or save the file delimited by commas")
        raise ImportFailed(f"{path}:1: the header is one column {header[0][:200]!r}: the file seems to be delimited "
                           f"by {DELIMITERS[other[0]]}, not {DELIMITERS.get(delimiter, repr(delimiter))}. Nothing "
                           f"was imported; {fix}")
    missing = [c for c in required if c not in header]
    if missing:
        raise ImportFailed(  # the datasets' own files: their importers take no --map, the file is to be fixed
            f"{path}:1: header lacks column(s) {missing}; found {header[:12]}. Is this the right file? Its first "
            f"line must name the columns {list(required)} (in any order, among any others): rename the column in "
            "that line. Nothing was imported"
        )
    twice = {h: [i + 1 for i, g in enumerate(header) if g == h] for h, n in Counter(header).items() if h and n > 1}
    if twice:
        where = "; ".join(f"{h!r} as columns {', '.join(map(str, cols))}" for h, cols in twice.items())
        raise ImportFailed(f"{path}:1: the header names a column more than once ({where}): which of them holds the "
                           "values is a guess, so nothing was imported. Rename or remove the extra column(s)")
    return header


def read_delimited(
    path: Path,
    *,
    delimiter: str = ",",
    fieldnames: list[str] | None = None,
    encoding: str = "utf-8",
    required: tuple[str, ...] = (),
    quoted: bool = True,
    on_header: OnHeader | None = None,
) -> Iterator[Read]:
    """Rows of a delimited text file as (line, dict); ``fieldnames`` given means the file has no header;
    ``quoted`` False reads a format without quoting (MovieLens), where a ``"`` is text."""
    enc = text_encoding(path, encoding)
    with _open_text(path, enc) as f:
        lines = _Lines(f)
        reader = csv.reader(lines, delimiter=delimiter, strict=True, quoting=csv.QUOTE_MINIMAL if quoted else
                            csv.QUOTE_NONE)
        line = 0
        try:
            header = fieldnames
            if header is None:
                header = next(reader, None)
                if header is None:
                    raise ImportFailed(f"{path}: the file is empty; expected a header line")
                if "\x00" in "".join(header):  # UTF-16 without its mark: say so before any column is missed
                    raise ImportFailed(nul_bytes(path, 1))
                header = _checked_header(path, header, required, delimiter)
                if on_header is not None:
                    on_header([h for h in header if h])
                unnamed = [i + 1 for i, h in enumerate(header) if not h]
                if unnamed:  # pandas' to_csv writes its index so; no filter or field could name it
                    yield Note(1, f"column(s) {unnamed} have no name in the header (an index written by pandas' "
                                  "to_csv?) and were left out")
            pending: BadLine | None = None
            line = reader.line_num
            for rec in reader:
                if pending is not None:
                    yield pending
                    pending = None
                start, line = line + 1, reader.line_num
                if not rec or rec == [""]:
                    continue
                if "\x00" in "".join(rec):
                    raise ImportFailed(nul_bytes(path, start))
                if len(rec) != len(header):
                    pending = BadLine(start, f"expected {len(header)} fields, found {len(rec)}")
                    continue
                yield start, {h: v for h, v in zip(header, rec, strict=True) if h}
            if pending is not None:
                if not lines.complete:
                    raise ImportFailed(
                        f"{path}:{pending.line}: the file ends in the middle of a row ({pending.reason}); it looks "
                        "truncated. Nothing was imported; copy the file again."
                    )
                yield pending
            elif not lines.complete and line:
                yield Note(line, "the file does not end with a line break: if it was cut off, its last row is cut "
                                 "short too (it was imported; check it)")
        except csv.Error as e:
            raise ImportFailed(_csv_error(path, e, line + 1)) from e
        except UnicodeDecodeError as e:
            raise ImportFailed(undecodable(path, enc, first_undecodable_line(path, enc), e.reason)) from e
        except GZIP_ERRORS as e:
            raise ImportFailed(_gzip_broken(path, line + 1, e)) from e


def _csv_error(path: Path, e: csv.Error, start: int) -> str:
    """What the csv module's error means, at the line where the unreadable record began."""
    said = str(e)
    if "field limit" in said:
        return (f"{path}:{start}: a field longer than {CSV_FIELD_LIMIT:,} characters (an unclosed quote, or not "
                "delimited text?); nothing was imported")
    if "unexpected end of data" in said:
        return (f"{path}:{start}: a quote opened in the row starting here is never closed; nothing was imported. "
                "Close it, or double a quote meant as text (\"\")")
    if "expected after" in said:
        return (f"{path}:{start}: a field starts with a quote that closes before the field ends ({said}); "
                'nothing was imported. Quote the whole field and double the quotes inside ("""Weird"" Al"), '
                "or leave out the opening quote")
    return f"{path}:{start}: unreadable ({said}); nothing was imported"


def _json_error(e: json.JSONDecodeError) -> str:
    """json's message with the column (character) it points at: "Unterminated string starting at column 27", or
    "Expecting ',' delimiter at column 36, where the line ends" for a line that breaks off."""
    end = ", where the line ends" if e.pos >= len(e.doc) else ""
    return f"{e.msg} {'' if e.msg.endswith(' at') else 'at '}column {e.colno}{end}"


def read_jsonl(path: Path, *, encoding: str = "utf-8") -> Iterator[Read]:
    enc = text_encoding(path, encoding)
    with _open_text(path, enc) as f:
        lines = _with_last(enumerate(f, start=1), path, enc)
        for (line, text), last in lines:
            if not text.strip():
                continue
            if line == 1 and text.lstrip().startswith("["):
                raise ImportFailed(f"{path}: a JSON array; `recsys import` reads JSON Lines, one object per line: "
                                   f"convert it with {_to_lines(path)}")
            try:
                # without its line break: json would point past it, at column 1 of a line after this one
                obj = json.loads(text.rstrip("\r\n"), object_pairs_hook=_one_value_per_key)
            except _RepeatedKey as e:
                yield BadLine(line, f"key {e.key!r} is given twice in one object: which value is meant is a guess; "
                                    "keep one")
                continue
            except json.JSONDecodeError as e:
                if last and text[-1:] not in ("\n", "\r"):  # cut off, not a bad line
                    raise ImportFailed(
                        f"{path}:{line}: the last line is cut off ({_json_error(e)}); the file looks truncated. "
                        "Nothing was imported."
                    ) from e
                yield BadLine(line, f"invalid JSON ({_json_error(e)})")
                continue
            except RecursionError:
                yield BadLine(line, f"JSON nested more than {MAX_DEPTH} levels deep")
                continue
            if not isinstance(obj, dict):
                yield BadLine(line, f"expected a JSON object, found {type(obj).__name__}")
                continue
            if too_deep(obj):
                yield BadLine(line, f"JSON nested more than {MAX_DEPTH} levels deep")
                continue
            yield line, obj


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; _RepeatedKey where it gives a key twice (json keeps the last one silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey(next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1))
    return obj


def _with_last(lines: Iterator[tuple[int, str]], path: Path,
               enc: TextEncoding) -> Iterator[tuple[tuple[int, str], bool]]:
    """Each of ``lines`` with whether it is the last, reading one line ahead (the file is never held whole)."""
    current: tuple[int, str] = (0, "")
    try:
        ahead = next(lines, None)
        while ahead is not None:
            current, ahead = ahead, next(lines, None)
            yield current, ahead is None
    except UnicodeDecodeError as e:
        raise ImportFailed(undecodable(path, enc, first_undecodable_line(path, enc), e.reason)) from e
    except GZIP_ERRORS as e:
        raise ImportFailed(_gzip_broken(path, current[0] + 1, e)) from e


def read_parquet(path: Path, *, batch_rows: int = 50_000, on_header: OnHeader | None = None) -> Iterator[Read]:
    import pyarrow.parquet as pq

    if is_gzip(path):  # Parquet is read by seeking: a gzip stream cannot be, and Parquet compresses its own data
        raise ImportFailed(gunzip_first(path, "Parquet is read by seeking, which a gzip stream cannot do; it "
                                              "compresses its own data anyway"))
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise ImportFailed(f"{path}: not a readable Parquet file ({e}); nothing was imported") from e
    twice = sorted(n for n, k in Counter(pf.schema_arrow.names).items() if k > 1)
    if twice:  # a row (a dict) would keep the last column of the name
        raise ImportFailed(f"{path}: the file names column(s) {twice} more than once: which of them holds the "
                           "values is a guess, so nothing was imported. Rename or drop the extra column(s)")
    if on_header is not None:
        on_header(list(pf.schema_arrow.names))
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec
    except Exception as e:
        raise ImportFailed(f"{path}: row {row + 1}: unreadable Parquet data ({e}); nothing was imported") from e


def file_format(path: Path, fmt: str = "auto") -> str:
    """``fmt``, or with "auto" the format the file extension names (csv, tsv, jsonl or parquet), the one before
    ``.gz`` for a gzip file (``items.csv.gz``)."""
    if fmt != "auto":
        return fmt
    gz = path.suffix.lower() == ".gz"
    suffix = unpacked_name(path).suffix.lower() if gz else path.suffix.lower()
    found = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
             ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "")
    if gz and not found:
        raise ImportFailed(f"{path}: cannot tell the format of this gzip file from its name (.csv.gz, .tsv.gz and "
                           ".jsonl.gz are known); pass --format csv|tsv|jsonl (it is read through gzip either way)")
    if not found:
        raise ImportFailed(f"{path}: cannot tell the format from '{suffix}'; pass --format csv|tsv|jsonl|parquet")
    return found


SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
"""Spreadsheet files (an .xlsx or .ods is a ZIP archive inside: "unzip it" would be the wrong advice)."""


def not_data(path: Path) -> str:
    """What to say of a file that no format can read as it is: a spreadsheet, or an archive recsys does not unpack
    (ZIP, bzip2, xz, Zstandard, told by its bytes, with the command that unpacks it); else "". A text export named
    .xls is neither: it imports with ``--format``."""
    if path.suffix.lower() in SPREADSHEETS and spreadsheet_bytes(path):
        return (f"{path}: a spreadsheet, which recsys does not read; nothing was imported. Save the sheet as CSV "
                "(UTF-8) and import that file")
    return packed(path)


def read_any(path: Path, fmt: str = "auto", *, delimiter: str = ",",
             on_header: OnHeader | None = None) -> Iterator[Read]:
    """CSV (delimited by ``delimiter``), TSV, JSONL or Parquet by ``fmt`` or the file extension, gzip-compressed or
    not."""
    if not path.exists():
        raise ImportFailed(f"{path}: no such file")
    if said := not_data(path):  # before the format: its name (items.csv.bz2) names none recsys reads
        raise ImportFailed(said)
    fmt = file_format(path, fmt)
    if delimiter != ",":
        if fmt != "csv":
            raise ImportFailed(f"--delimiter is for CSV files; {path} is read as {fmt}")
        if len(delimiter) != 1 or delimiter in "\"\r\n":
            hint = " (for tabs, --format tsv)" if delimiter.lower() in ("\\t", "tab") else ""
            raise ImportFailed(f"--delimiter takes one character other than a quote or a line break, e.g. "
                               f"--delimiter ';'; got {delimiter!r}{hint}")
    if fmt in ("csv", "tsv"):
        return read_delimited(path, delimiter="\t" if fmt == "tsv" else delimiter, on_header=on_header)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "parquet":
        return read_parquet(path, on_header=on_header)
    raise ImportFailed(f"unknown format '{fmt}'; use csv, tsv, jsonl or parquet")


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists or objects more than ``limit`` levels deep (without recursion)."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x)
                 if isinstance(v, dict | list)] if level else []
        if not level:
            return False
    return True
