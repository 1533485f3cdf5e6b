"""Every notebook in notebooks/ is stored without outputs, and runs top to bottom (nbclient) on the small demo."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_fixture import ARTIFACTS, ROOT, private_home
from tests.notebooks.stores import as_if_built, own_store

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path: Path) -> None:
    book = json.loads(path.read_text(encoding="utf-8"))
    for n, cell in enumerate(book["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name} cell {n}"
    params = [c for c in book["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{path.name}: one cell tagged 'parameters'"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_demo(path: Path, demo_home: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    home = private_home(demo_home, tmp_path / "home")  # notebooks write (likes): never into the shared build
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=1200, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        out = ARTIFACTS / "notebooks"
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(book, out / path.name)  # the executed copy, outputs included, for a look afterwards
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert not noise(book)
    figures = sum("image/png" in o.get("data", {}) for c in book.cells if c.cell_type == "code"
                  for o in c.get("outputs", []))
    assert figures >= 3, f"{path.name} drew {figures} figures"
    assert os.environ["RECSYS_HOME"] == str(home)


def noise(book: Any) -> list[str]:
    """Printed text a reader should not have to skip: warnings (tqdm's "IProgress not found") and numpy scalar
    reprs (``{'view': np.int64(142)}`` under numpy 2)."""
    streams = [o.text for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.output_type == "stream"]
    return [t for t in streams if "Warning" in t or re.search(r"\bnp\.\w+\(", t)]


def test_run_all_takes_a_dataset_for_an_empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # `RECSYS_NB_DATA` with a fresh home was refused ("no recsys store"), and over a built store silently ignored
    import notebooks.run_all as run_all

    ran: list[str] = []
    monkeypatch.setattr("nbclient.NotebookClient.execute", lambda self: ran.append("x"))
    monkeypatch.setattr(run_all, "HERE", tmp_path)  # no notebooks there: the checks only, nothing executed
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECSYS_NB_DATA", raising=False)
    assert run_all.main([]) == 2
    said = capsys.readouterr()
    assert "RECSYS_NB_DATA to a dataset directory" in said.err
    # the first line comes before the store is opened, which takes seconds (it was 37 s of silence)
    assert said.out.startswith(f"notebooks: checking the store at {tmp_path / 'empty'} ...")
    monkeypatch.setenv("RECSYS_NB_DATA", "data/hm")
    assert run_all.main([]) == 0
    assert os.environ["RECSYS_NB_DATA"] == str(Path("data/hm").resolve())  # the kernels run in notebooks/
    own_store(tmp_path / "empty")
    as_if_built(monkeypatch)
    assert run_all.main([]) == 0 and "is not imported" in capsys.readouterr().err


def test_lab_opens_the_notebooks_on_the_same_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make lab` started JupyterLab bare: the notebooks built a small demo of their own inside the demo's store,
    and a relative RECSYS_NB_DATA was read from notebooks/."""
    import notebooks.run_all as run_all

    started: list[list[str]] = []
    monkeypatch.setattr(run_all.os, "execv", lambda path, args: started.append(args))
    monkeypatch.chdir(tmp_path)
    own_store(tmp_path / ".recsys")
    as_if_built(monkeypatch)
    monkeypatch.delenv("RECSYS_HOME", raising=False)
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECSYS_NB_DATA", raising=False)
    assert run_all.main(["--lab"]) == 0
    assert started == [[str(Path(sys.executable).parent / "jupyter"), "lab", str(run_all.HERE)]]
    assert os.environ["RECSYS_HOME"] == str(tmp_path / ".recsys")


def test_make_demo_checks_the_port_before_installing() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    demo = next(line for line in makefile.splitlines() if line.startswith("demo:"))
    assert demo.split()[1:] == ["demo-port", "$(DEMO_STAMP)"]
