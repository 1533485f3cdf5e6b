"""Which text encoding a file is read in, and what to say when its bytes are not that encoding.

Files are UTF-8 (a byte-order mark allowed). A file that starts with a UTF-16 or UTF-32 byte-order mark (Excel's
"Unicode text", PowerShell's default) says its own encoding, so it is read in that one; any other encoding cannot be
told from the bytes, so an undecodable file is refused with the ``iconv`` line that converts it. A gzip file (told by
its magic bytes, whatever its name) is read through gzip, streamed like a plain one; other archives (ZIP, bzip2, xz,
Zstandard) are refused with the command that unpacks them, never with an ``iconv`` line for their binary bytes.
"""

from __future__ import annotations

import gzip
import re
import shlex
import zlib
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path
from typing import IO

GZIP_MAGIC = b"\x1f\x8b"
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
"""What reading a cut-off or corrupt gzip stream raises (EOFError: it ends before its end-of-stream marker)."""
_PACKED = (
    (re.compile(re.escape(b"PK\x03\x04")), "a ZIP archive", "unzip"),
    # "BZh" alone starts plain text too (a header column BZh_sku): the block size digit and a block's (or the
    # empty stream's end) magic follow in a real bzip2 file
    (re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)"), "a bzip2 file", "bunzip2"),
    (re.compile(re.escape(b"\xfd7zXZ\x00")), "an xz file", "unxz"),
    (re.compile(re.escape(b"\x28\xb5\x2f\xfd")), "a Zstandard file", "unzstd"),
)
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""An old Excel .xls (a compound file); .xlsx, .ods and .numbers are ZIP archives."""

_MARKS = (  # the UTF-32 marks first: UTF-32-LE's starts with UTF-16-LE's
    (b"\xff\xfe\x00\x00", "UTF-32", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "UTF-32", "utf-32-be"),
    (b"\xff\xfe", "UTF-16", "utf-16-le"),
    (b"\xfe\xff", "UTF-16", "utf-16-be"),
)


@dataclass(frozen=True)
class TextEncoding:
    name: str
    """The codec to open the file with (it drops a byte-order mark)."""
    unit: str
    """The codec of the file's code units without a mark (to decode one raw line alone)."""
    width: int
    """Bytes per code unit."""
    label: str
    """How messages name it."""


def _raw_head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of the file as stored (compressed or not); b"" where it cannot be read (opening it
    again says why, with the path)."""
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError:
        return b""


def is_gzip(path: Path) -> bool:
    return _raw_head(path, 2) == GZIP_MAGIC


def unpacked_name(path: Path) -> Path:
    """The file's name without its ``.gz`` (``items.csv.gz`` -> ``items.csv``)."""
    return path.with_suffix("") if path.suffix.lower() == ".gz" else path


def open_bytes(path: Path) -> BufferedIOBase:
    """The file's bytes, decompressed as they are read where it is gzip (never held whole)."""
    return gzip.open(path, "rb") if is_gzip(path) else path.open("rb")


def open_text(path: Path, enc: TextEncoding) -> IO[str]:
    """The file's text in ``enc``, line endings as they are (``newline=""``: the csv module wants them so)."""
    if is_gzip(path):
        return gzip.open(path, "rt", encoding=enc.name, newline="")
    return path.open("r", encoding=enc.name, newline="")


def spreadsheet_bytes(path: Path) -> bool:
    """Whether the file's bytes are a spreadsheet's container (ZIP, or an old .xls's compound file): a text export
    merely named .xls is not one."""
    head = _raw_head(path, 8)
    return head.startswith(OLE2_MAGIC) or head.startswith(b"PK\x03\x04")


def packed(path: Path) -> str:
    """What to say of a file that is an archive recsys does not unpack (ZIP, bzip2, xz, Zstandard), else ""."""
    head = _raw_head(path, 10)
    for magic, kind, tool in _PACKED:
        if magic.match(head):
            return (f"{path}: {kind}, not text; nothing was imported. Unpack it first (`{tool}`) and import the "
                    "file inside")
    return ""


def gunzip_first(path: Path, why: str) -> str:
    """The message for a gzip file that cannot be read as it is: gunzip it first."""
    plain = unpacked_name(path)
    if plain == path:  # a gzip file not named .gz: gunzip itself refuses it, gunzip -c does not
        plain = path.with_name(f"{path.stem}.gunzipped{path.suffix}")
    src, dst = shlex.quote(str(path)), shlex.quote(str(plain))
    return f"{path}: a gzip file: gunzip it first ({why}): `gunzip -c {src} > {dst}`, then import {dst}"


def text_encoding(path: Path, encoding: str) -> TextEncoding:
    """How to read ``path`` asked to read it as ``encoding``: a UTF-16 or UTF-32 byte-order mark, where UTF-8 is
    asked for, names the file's own encoding (the mark of a gzip file's text, inside it)."""
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return TextEncoding(encoding, encoding, 1, encoding)
    try:
        with open_bytes(path) as f:
            head = f.read(4)
    except (OSError, *GZIP_ERRORS):
        head = b""  # opening (or reading) it again says why, with the path
    for mark, label, unit in _MARKS:
        if head.startswith(mark):
            return TextEncoding(label.lower(), unit, 4 if label == "UTF-32" else 2, label)
    # a UTF-8 byte-order mark (written by some Windows tools) is not part of the first field
    return TextEncoding("utf-8-sig", "utf-8", 1, "utf-8")


def first_undecodable_line(path: Path, enc: TextEncoding) -> int:
    """The number of the first line that is not ``enc`` text (the text reader decodes ahead in blocks, so its own
    position says only which block failed)."""
    n = 0
    try:
        if enc.width > 1:  # lines of wide code units cannot be split on the byte 0x0a: count decoded lines instead
            try:
                with open_text(path, enc) as f:
                    for n, _ in enumerate(f, start=1):  # noqa: B007
                        pass
            except UnicodeDecodeError:
                return n + 1
            return 1
        with open_bytes(path) as f:
            for n, raw in enumerate(f, start=1):
                try:
                    raw.decode(enc.unit)
                except UnicodeDecodeError:
                    return n
    except GZIP_ERRORS:  # a cut-off gzip file ends in its last, undecodable line: the line reached
        return n + 1
    return 1


def _utf16_without_mark(path: Path) -> str:
    """"LE" or "BE" where the file's first bytes look like UTF-16 text without its byte-order mark (a NUL in every
    other byte: ASCII text so encoded), else ""."""
    with open_bytes(path) as f:
        head = f.read(200)
    if len(head) < 4:
        return ""
    even, odd = head[0::2].count(0), head[1::2].count(0)
    return "LE" if odd > len(head) // 4 and even == 0 else "BE" if even > len(head) // 4 and odd == 0 else ""


def _convert(path: Path, source: str) -> str:
    plain = unpacked_name(path)
    src, dst = shlex.quote(str(path)), shlex.quote(str(plain.with_name(f"{plain.stem}.utf8{plain.suffix}")))
    if is_gzip(path):  # iconv reads text: the gzip file's bytes are not
        return f"`gunzip -c {src} | iconv -f {source} -t UTF-8 > {dst}` and import {dst}"
    return f"`iconv -f {source} -t UTF-8 {src} > {dst}` and import {dst}"


def undecodable(path: Path, enc: TextEncoding, line: int, reason: str) -> str:
    """The message for a file whose bytes are not ``enc`` text, with what to do about it."""
    if said := packed(path):
        return said
    if enc.label != "utf-8":
        return (f"{path}:{line}: not valid {enc.label} text ({reason}), though the file starts with a {enc.label} "
                "byte-order mark; the file is garbled. Nothing was imported.")
    if order := _utf16_without_mark(path):
        return (f"{path}:{line}: not valid utf-8 text ({reason}): the file looks like UTF-16 text without its "
                f"byte-order mark. Nothing was imported. Convert it: {_convert(path, 'UTF-16' + order)}")
    return (f"{path}:{line}: not valid utf-8 text ({reason}); the file is garbled or binary, or in another encoding. "
            "Nothing was imported. recsys reads UTF-8 (and UTF-16 that starts with its byte-order mark): save the "
            "file as UTF-8, or convert it, e.g. from Windows-1252 (Excel's \"CSV\" on Windows; latin-1 reads the "
            f"same but for a few signs): {_convert(path, 'CP1252')}")


def nul_bytes(path: Path, line: int) -> str:
    """The message for a NUL byte in what was read as UTF-8: UTF-16 without its byte-order mark, or binary."""
    if said := packed(path):
        return said
    if order := _utf16_without_mark(path):
        return (f"{path}:{line}: NUL bytes in the data: the file looks like UTF-16 text without its byte-order "
                f"mark; nothing was imported. Convert it: {_convert(path, 'UTF-16' + order)}")
    return f"{path}:{line}: NUL byte in the data; the file is binary or corrupted"
