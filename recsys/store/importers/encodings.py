"""Which text encoding a file is read in, and what to say when its bytes are not that encoding.

Files are UTF-8 (a byte-order mark allowed). A file that starts with a UTF-16 or UTF-32 byte-order mark (Excel's
"Unicode text", PowerShell's default) says its own encoding, so it is read in that one; any other encoding cannot be
told from the bytes, so an undecodable file is refused with the ``iconv`` line that converts it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

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
    """The codec of the file's code units without a mark (to read its last character alone)."""
    width: int
    """Bytes per code unit (of a line break)."""
    label: str
    """How messages name it."""


def text_encoding(path: Path, encoding: str) -> TextEncoding:
    """How to read ``path`` asked to read it as ``encoding``: a UTF-16 or UTF-32 byte-order mark, where UTF-8 is
    asked for, names the file's own encoding."""
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return TextEncoding(encoding, encoding, 1, encoding)
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        head = b""  # opening it again says why, with the path
    for mark, label, unit in _MARKS:
        if head.startswith(mark):
            return TextEncoding(label.lower(), unit, 4 if label == "UTF-32" else 2, label)
    # a UTF-8 byte-order mark (written by some Windows tools) is not part of the first field
    return TextEncoding("utf-8-sig", "utf-8", 1, "utf-8")


def ends_with_newline(path: Path, enc: TextEncoding) -> bool:
    with path.open("rb") as f:
        f.seek(0, 2)
        if f.tell() <= enc.width:
            return True
        f.seek(-enc.width, 2)
        return f.read(enc.width).decode(enc.unit, errors="replace") in ("\n", "\r")


def first_undecodable_line(path: Path, enc: TextEncoding) -> int:
    """The number of the first line that is not ``enc`` text (the text reader decodes ahead in blocks, so its own
    position says only which block failed)."""
    if enc.width > 1:  # lines of wide code units cannot be split on the byte 0x0a: count decoded lines instead
        n = 0
        try:
            with path.open("r", encoding=enc.name, newline="") as f:
                for n, _ in enumerate(f, start=1):  # noqa: B007
                    pass
        except UnicodeDecodeError:
            return n + 1
        return 1
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                raw.decode(enc.unit)
            except UnicodeDecodeError:
                return n
    return 1


def _utf16_without_mark(path: Path) -> str:
    """"LE" or "BE" where the file's first bytes look like UTF-16 text without its byte-order mark (a NUL in every
    other byte: ASCII text so encoded), else ""."""
    with path.open("rb") as f:
        head = f.read(200)
    if len(head) < 4:
        return ""
    even, odd = head[0::2].count(0), head[1::2].count(0)
    return "LE" if odd > len(head) // 4 and even == 0 else "BE" if even > len(head) // 4 and odd == 0 else ""


def _convert(path: Path, source: str) -> str:
    src, dst = shlex.quote(str(path)), shlex.quote(str(path.with_name(f"{path.stem}.utf8{path.suffix}")))
    return f"`iconv -f {source} -t UTF-8 {src} > {dst}` and import {dst}"


def undecodable(path: Path, enc: TextEncoding, line: int, reason: str) -> str:
    """The message for a file whose bytes are not ``enc`` text, with what to do about it."""
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
    if order := _utf16_without_mark(path):
        return (f"{path}:{line}: NUL bytes in the data: the file looks like UTF-16 text without its byte-order "
                f"mark; nothing was imported. Convert it: {_convert(path, 'UTF-16' + order)}")
    return f"{path}:{line}: NUL byte in the data; the file is binary or corrupted"
