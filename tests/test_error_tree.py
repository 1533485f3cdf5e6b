"""The exception tree drawn in recsys/errors.py's docstring (the reference STYLE.md points to) is the code's: every
class of the module drawn, each under its parent, with its code and HTTP status."""

from __future__ import annotations

import inspect
import re

import recsys.errors as E
from recsys.serving.generations import UnknownRanker

ROW = re.compile(r"[├└]── (\w+)\s+(\w+)\s+(\d+)")


def _drawn() -> list[tuple[str, str, str, int]]:
    """(class, parent, code, status) per row of the drawing, the parent read from the indentation."""
    rows, stack = [], [(-1, "RecsysError")]
    for line in (E.__doc__ or "").splitlines():
        m = ROW.search(line)
        if m is None:
            continue
        depth = line.index(m.group(0))
        while stack[-1][0] >= depth:
            stack.pop()
        rows.append((m.group(1), stack[-1][1], m.group(2), int(m.group(3))))
        stack.append((depth, m.group(1)))
    return rows


def test_the_drawn_tree_is_the_code() -> None:
    classes = {n: c for n, c in vars(E).items() if inspect.isclass(c) and issubclass(c, E.RecsysError)}
    classes["UnknownRanker"] = UnknownRanker
    drawn = _drawn()
    assert {r[0] for r in drawn} == set(classes) - {"RecsysError"}
    for name, parent, code, status in drawn:
        c = classes[name]
        assert (c.__bases__[0].__name__, c.code, c.status) == (parent, code, status), name
