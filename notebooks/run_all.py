"""Run every notebook top to bottom against the store of ``RECSYS_HOME`` (default ``./.recsys``, what `make demo`
built) and write the executed copies, outputs included, to ``notebooks/executed/``:

    make notebooks                       # the demo store
    make lab                             # the same stores, opened in JupyterLab (run_all.py --lab)
    RECSYS_HOME=/data/hm make notebooks  # a built H&M store
    RECSYS_HOME=/data/new RECSYS_NB_DATA=../shared/data/hm make notebooks  # import and build it there first

The notebooks write (a like in 02): point them at a store you may change. A notebook that fails (a cell's error, a
cell running past :data:`CELL_TIMEOUT_S`, a kernel that died) is named with its cell on stderr, and the next one runs;
the exit code is 1 when any failed, 2 when none could start.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def notebook_env(ranked: bool = False) -> Path | None:
    """Point the kernels (which run in notebooks/) at the store of RECSYS_HOME and the dataset of RECSYS_NB_DATA,
    both made absolute; None (and a message) when there is nothing to show, or the notebooks would stop on it
    (``ranked``: also when a built store has no ranker to recommend with)."""
    home = Path(os.environ.setdefault("RECSYS_HOME", ".recsys")).resolve()
    data = os.environ.get("RECSYS_NB_DATA", "demo")
    # said first: opening the store and its served generations (torch, the index, the ranker) takes seconds
    print(f"notebooks: checking the store at {home} ...", flush=True)
    held, refused = store_check(home, ranked=ranked)
    if refused:
        print(refused, file=sys.stderr)
        return None
    if not held and data == "demo":
        print(f"no recsys data at {home}: run `make demo` first, set RECSYS_HOME to a built store, or set "
              "RECSYS_NB_DATA to a dataset directory (H&M or MovieLens) to import and build it there first",
              file=sys.stderr)
        return None
    if data != "demo":
        if held:  # the notebooks import a dataset only into an empty data directory
            print(f"note: {home} already holds a store, which the notebooks use; RECSYS_NB_DATA={data} is not "
                  "imported (give a new RECSYS_HOME to import it)", file=sys.stderr)
        os.environ["RECSYS_NB_DATA"] = str(Path(data).resolve())
    os.environ["RECSYS_HOME"] = str(home)
    return home


def store_check(home: Path, *, ranked: bool = False) -> tuple[bool, str | None]:
    """The test of the notebooks' setup cell (``recsys.demo.notebooks``), made before any kernel starts: (whether the
    store of ``home`` holds items or events, why the notebooks would stop on it or None). ``ranked``: a built store
    whose ranker is missing (a build stopped before training) is refused too, as 02 would stop at its first list."""
    from recsys.config import Settings

    settings = Settings(home=home)
    if not settings.database_url and not (home / "recsys.db").exists():
        return False, None  # nothing to open (opening would create the file)
    from recsys.demo.notebooks import held, refusal
    from recsys.errors import RecsysError
    from recsys.service import Recommender
    from recsys.store import Store

    store = None
    try:
        store = Store.open(settings)
        rec = Recommender(settings, store)
        return any(held(store)), refusal(rec) or (unranked(rec, home) if ranked else None)
    except RecsysError as e:  # unreachable, damaged: said once here, not by a traceback in every notebook
        return False, f"cannot read the store of {home}: {e}"
    finally:
        if store is not None:
            store.dispose()


def unranked(rec: Any, home: Path) -> str | None:
    """Why a store with a loadable index cannot recommend (no ranker trained, or one that cannot be loaded), or None.
    A store not built yet is :func:`recsys.demo.notebooks.refusal`'s (or the notebooks build it)."""
    status = rec.status()
    if not status["ready"] or "recommendations" not in status.get("not_served", ()):
        return None
    why = status.get("ranker_error") or "none has been trained yet (a build stopped before training?)"
    return (f"{home} has an index but no ranker to recommend with: {why}. 02_one_user would stop at its first list: "
            f"train one first (`RECSYS_HOME={home} recsys build`, or `recsys train`)")


def main(argv: list[str] | None = None) -> int:
    import argparse

    import nbformat

    parser = argparse.ArgumentParser(prog="run_all.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", action="store_true", help="open the notebooks in JupyterLab instead of running them")
    lab = parser.parse_args(sys.argv[1:] if argv is None else argv).lab  # --help: this text, nothing run or written
    home = notebook_env(ranked=not lab)  # JupyterLab opens 01 on a store without a ranker as well
    if home is None:
        return 2
    if lab:  # the same store in JupyterLab, not a demo of its own
        jupyter = str(Path(sys.executable).parent / "jupyter")
        os.execv(jupyter, [jupyter, "lab", str(HERE)])
        return 0  # not reached: execv replaces this process
    out = HERE / "executed"
    out.mkdir(exist_ok=True)
    books = sorted(HERE.glob("*.ipynb"))
    failed = []
    for path in books:  # a failed notebook (its cell said on stderr) does not stop the ones after it
        print(f"{path.name}: running on {home} ...", flush=True)
        book = nbformat.read(path, as_version=4)
        try:
            if not run_notebook(book, path.name, f"-> {out / path.name}"):
                failed.append(path.name)
        finally:
            nbformat.write(book, out / path.name)
    if failed:
        print(f"{len(failed)} of {len(books)} notebooks failed: {', '.join(failed)} (the executed copies in {out} "
              "show each traceback)", file=sys.stderr, flush=True)
    return 1 if failed else 0


CELL_TIMEOUT_S = 1800
"""A cell running longer than this fails its notebook (nbclient's timeout; the demo's longest, an evaluation, takes
minutes)."""


def run_notebook(book: Any, name: str, where: str = "") -> bool:
    """Execute ``book`` in place, a line per cell and every :data:`EVERY_S` within a long one; False when a cell
    failed, ran past :data:`CELL_TIMEOUT_S` or its kernel died (said on stderr, with the cell)."""
    import tempfile

    import nbclient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    progress = CellProgress(name, sum(c.cell_type == "code" and bool(c.source.strip()) for c in book.cells))
    sockets = tempfile.TemporaryDirectory(prefix="recsys-nb-")
    client = nbclient.NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     config=kernel_config(sockets.name), resources={"metadata": {"path": str(HERE)}},
                                     on_cell_execute=progress.on_cell_execute)
    stop = threading.Event()
    ticker = threading.Thread(target=_ticking, args=(progress, stop), daemon=True)
    ticker.start()
    try:
        client.execute()
        print(f"{name}: ok ({progress.elapsed():.0f} s) {where}".rstrip(), flush=True)
        return True
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        print(f"{name}: FAILED at {progress.where()}: {failure(e)}", file=sys.stderr, flush=True)
        return False
    finally:
        stop.set()
        ticker.join()
        sockets.cleanup()


def failure(e: Exception) -> str:
    """What went wrong, on one line: the cell's exception as ``ename: evalue`` (``str(e)`` is IPython's traceback,
    with its colour codes), or a timeout or a dead kernel in words."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    if isinstance(e, CellExecutionError):
        return " ".join(f"{e.ename}: {e.evalue}".split())
    if isinstance(e, CellTimeoutError):
        return f"the cell ran past {CELL_TIMEOUT_S} s (run_all.CELL_TIMEOUT_S) and was stopped"
    return "the kernel died (out of memory? a crash in native code?)"


def _ticking(progress: CellProgress, stop: threading.Event) -> None:
    while not stop.wait(1.0):  # the cells run in nbclient's event loop: a long one says nothing by itself
        progress.tick()


def kernel_config(sockets: str) -> Any:
    """The kernel talks over local sockets (IPC) in the private directory ``sockets``, not TCP on localhost: no
    port another local user could reach, and no "Kernel is running over TCP without encryption" warning from each
    kernel. The socket path is absolute: a relative one is read from the kernel's directory and the client's apart."""
    from traitlets.config import Config

    if os.name == "nt":  # no IPC transport on Windows
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}})


EVERY_S = 20.0
"""Within a long cell (an evaluation runs for minutes on the 2,000-item demo), a line at most this often."""


class CellProgress:
    """Lines saying which cell of a notebook runs: "03_evaluation: cell 5/9 (40 s)" as it starts, and "still at
    cell 5/9 (60 s)" every :data:`EVERY_S` while it runs."""

    def __init__(self, name: str, cells: int, every_s: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.cells, self.every_s, self.clock = name, cells, every_s, clock
        self.started = self.said = clock()
        self.cell = 0
        self.source = ""

    def elapsed(self) -> float:
        return self.clock() - self.started

    def on_cell_execute(self, cell: Any = None, **_: Any) -> None:
        """nbclient's hook, before each code cell runs."""
        self.cell += 1
        self.source = cell.source if cell is not None else ""
        self._say(f"cell {self.cell}/{self.cells}")

    def where(self) -> str:
        """The cell that runs, as a reader finds it in the executed copy: its number among the code cells (the
        ``In [n]`` Jupyter shows, the kernel being fresh) and its first line."""
        first = next((line.strip() for line in self.source.splitlines() if line.strip()), "")
        shown = first if len(first) <= 50 else first[:49] + "…"
        return f"cell {self.cell}/{self.cells} (In [{self.cell}]" + (f": {shown})" if shown else ")")

    def tick(self) -> None:
        """Called every second: a line when nothing was said for ``every_s`` seconds."""
        if self.cell and self.clock() - self.said >= self.every_s:
            self._say(f"still at cell {self.cell}/{self.cells}")

    def _say(self, what: str) -> None:
        self.said = self.clock()
        print(f"{self.name}: {what} ({self.said - self.started:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
