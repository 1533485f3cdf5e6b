"""`make notebooks` says which cell runs (a long evaluation was minutes of silence), and its kernels talk over IPC
(each printed a "Kernel is running over TCP without encryption" warning)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import notebooks.run_all as run_all
from tests.notebooks.stores import as_if_built, own_store


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_per_cell_and_every_interval_within_a_long_one(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    progress = run_all.CellProgress("03_evaluation.ipynb", 9, every_s=20.0, clock=clock)
    progress.tick()  # the kernel is starting: no cell yet, nothing to say
    clock.now += 5
    progress.on_cell_execute(cell=None, cell_index=1)
    clock.now += 19
    progress.tick()
    clock.now += 1
    progress.tick()
    clock.now += 10
    progress.tick()  # said 10 s ago
    clock.now += 10
    progress.on_cell_execute(cell=None, cell_index=3)
    assert capsys.readouterr().out.splitlines() == [
        "03_evaluation.ipynb: cell 1/9 (5 s)", "03_evaluation.ipynb: still at cell 1/9 (25 s)",
        "03_evaluation.ipynb: cell 2/9 (45 s)"]


def test_make_notebooks_runs_quietly_over_ipc_and_says_each_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if os.name == "nt":
        pytest.skip("no IPC transport on Windows")
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_markdown_cell("# two cells"), nbformat.v4.new_code_cell("x = 41"),
                  nbformat.v4.new_code_cell("print(x + 1)")]
    (tmp_path / "nb").mkdir()
    nbformat.write(book, tmp_path / "nb" / "01_tiny.ipynb")
    own_store(tmp_path / "home")
    as_if_built(monkeypatch)
    monkeypatch.setattr(run_all, "HERE", tmp_path / "nb")
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECSYS_NB_DATA", raising=False)
    assert run_all.main([]) == 0
    out, err = capfd.readouterr()
    assert "without encryption" not in out + err
    lines = [line.split(" (")[0] for line in out.splitlines()]
    assert lines[0].startswith("notebooks: checking the store at "), out  # said before the store is opened
    assert lines[2:5] == ["01_tiny.ipynb: cell 1/2", "01_tiny.ipynb: cell 2/2", "01_tiny.ipynb: ok"], out
    executed = nbformat.read(tmp_path / "nb" / "executed" / "01_tiny.ipynb", as_version=4)
    assert executed.cells[2].outputs[0].text == "42\n"
    assert sorted(p.name for p in (tmp_path / "nb").iterdir()) == ["01_tiny.ipynb", "executed"]  # no socket files
