"""The ``artifacts`` table's docstring names exactly the kinds recsys writes to it (it once claimed rankers, which
no code records)."""

from __future__ import annotations

import re
from pathlib import Path

from recsys.store.tables import Artifact

RECSYS = Path(__file__).resolve().parents[2] / "recsys"


def test_the_docstring_names_the_kinds_written() -> None:
    written = {k for p in RECSYS.rglob("*.py")
               for k in re.findall(r'Artifact\(kind="(\w+)"', p.read_text(encoding="utf-8"))}
    documented = set(re.findall(r'kind="(\w+)"', Artifact.__doc__ or ""))
    assert written == documented == {"encoder", "index"}
    assert "Rankers are not recorded" in (Artifact.__doc__ or "")
