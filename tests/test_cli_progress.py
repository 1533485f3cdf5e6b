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
        update("embed", 100, 100)  # said once
        update(3, 7)  # the single-stage form
        update("events", 5000)  # counts without a total: the last one is said at the end
        update("events", 10000)
        update("events", 14347)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0] == "build: starting"  # at once: the first stage can be seconds away
    assert lines[1].startswith("build: embed 0/100 (") and lines[1].endswith(" s)")
    assert "build: embed 50/100" not in err
    assert any(ln.startswith("build: embed 100/100") for ln in lines)
    assert any(ln.startswith("build: progress 3/7") for ln in lines)
    assert sum(ln.startswith("build: embed 100/100") for ln in lines) == 1
    assert lines[-1].startswith("build: events 14347 (") and "build: events 10000" not in err


def test_a_long_silent_step_says_it_is_still_at_work(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage whose next update is minutes away (a first batch, an epoch) printed nothing in a CI log meanwhile."""
    import time

    monkeypatch.setattr(_common, "err", Console(stderr=True, force_terminal=False, width=200))
    monkeypatch.setattr(_common, "PLAIN_EVERY_S", 0.05)
    said = ""
    with _common.progress_bar("build") as update:
        update("train: epochs", 1, 8)
        deadline = time.monotonic() + 30  # waits for the line however slow the machine: no bound on its timing
        while "still at work" not in said and time.monotonic() < deadline:
            time.sleep(0.05)
            said += capsys.readouterr().err
    assert "build: train: epochs 1/8 (still at work, " in said, said


@pytest.mark.parametrize("updates", [0, 2])
def test_on_a_terminal_the_starting_line_gives_way_to_the_stages(updates: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    out = io.StringIO()
    monkeypatch.setattr(_common, "err", Console(file=out, force_terminal=True, width=120))
    with _common.progress_bar("train") as update:
        for step in range(updates):
            update("epochs", step + 1, updates)
    assert "train: starting" in out.getvalue()
    assert ("train: epochs" in out.getvalue()) == bool(updates)
