"""Progress off a terminal: plain lines with the elapsed time (a piped `make demo` must show it is alive)."""

from __future__ import annotations

import pytest
from rich.console import Console

from recsys.cli import _common


def test_plain_progress_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "err", Console(stderr=True, force_terminal=False, width=200))
    with _common.progress_bar("build") as update:
        update("embed", 0, 100)
        update("embed", 50, 100)  # within PLAIN_EVERY_S of the first line: not printed
        update("embed", 100, 100)  # finished: always printed
        update(3, 7)  # the single-stage form
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("build: embed 0/100 (") and lines[0].endswith(" s)")
    assert "build: embed 50/100" not in err
    assert any(ln.startswith("build: embed 100/100") for ln in lines)
    assert any(ln.startswith("build: progress 3/7") for ln in lines)
