"""Text in a terminal table's columns: a Japanese or Chinese character takes two columns, a combining mark none, so
``str.ljust`` (which counts characters) shifted every column after a CJK title."""

from __future__ import annotations

import unicodedata


def cut(text: str, width: int) -> str:
    """``text`` in ``width`` terminal columns, cut at a word with an ellipsis rather than mid-word."""
    if columns(text) <= width:
        return text
    head, used = "", 0
    for c in text:  # a Japanese or Chinese character takes two columns
        if used + columns(c) > width - 1:
            break
        head, used = head + c, used + columns(c)
    return (head.rsplit(" ", 1)[0] if " " in head[len(head) // 2 :] else head) + "…"


def columns(text: str) -> int:
    """Terminal columns ``text`` takes: wide (East Asian) characters two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns (``str.ljust`` counts characters, not columns)."""
    return text + " " * max(0, width - columns(text))
