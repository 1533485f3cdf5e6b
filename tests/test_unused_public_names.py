"""Public names of these modules are used by recsys itself (or a migration), not kept for nothing: a constant
nobody reads invites its literals to be repeated inline, a helper nobody calls drifts from the one callers use."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("recsys/store/tables.py", "recsys/encoders/onnx_runtime.py")
USERS = ("recsys", "migrations")


def _public_names(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in names if not n.startswith("_")]


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_is_used(module: str) -> None:
    texts = [p.read_text(encoding="utf-8") for d in USERS for p in (ROOT / d).rglob("*.py")]
    unused = []
    for name in _public_names(ROOT / module):
        word = re.compile(rf"\b{re.escape(name)}\b")
        if sum(len(word.findall(t)) for t in texts) < 2:  # its definition is the one occurrence
            unused.append(name)
    assert unused == [], f"{module}: used by nothing in {', '.join(USERS)}: {', '.join(unused)}"
