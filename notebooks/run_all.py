"""Run every notebook top to bottom against the store of ``RECSYS_HOME`` (default ``./.recsys``, what `make demo`
built) and write the executed copies, outputs included, to ``notebooks/executed/``:

    make notebooks                       # the demo store
    make lab                             # the same stores, opened in JupyterLab (run_all.py --lab)
    RECSYS_HOME=/data/hm make notebooks  # a built H&M store
    RECSYS_HOME=/data/new RECSYS_NB_DATA=../shared/data/hm make notebooks  # import and build it there first

The notebooks write (a like in 02): point them at a store you may change.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def notebook_env() -> Path | None:
    """Point the kernels (which run in notebooks/) at the store of RECSYS_HOME and the dataset of RECSYS_NB_DATA,
    both made absolute; None (and a message) when there is nothing to show."""
    home = Path(os.environ.setdefault("RECSYS_HOME", ".recsys")).resolve()
    data = os.environ.get("RECSYS_NB_DATA", "demo")
    built = (home / "recsys.db").exists() or bool(os.environ.get("RECSYS_DATABASE_URL"))
    if not built and data == "demo":
        print(f"no recsys store at {home}: run `make demo` first, set RECSYS_HOME to a built store, or set "
              "RECSYS_NB_DATA to a dataset directory (H&M or MovieLens) to import and build it there first",
              file=sys.stderr)
        return None
    if data != "demo":
        if built:  # the notebooks import a dataset only into an empty data directory
            print(f"note: {home} already holds a store, which the notebooks use; RECSYS_NB_DATA={data} is not "
                  "imported (give a new RECSYS_HOME to import it)", file=sys.stderr)
        os.environ["RECSYS_NB_DATA"] = str(Path(data).resolve())
    os.environ["RECSYS_HOME"] = str(home)
    return home


def main(argv: list[str] | None = None) -> int:
    import nbclient
    import nbformat

    home = notebook_env()
    if home is None:
        return 2
    if "--lab" in (sys.argv[1:] if argv is None else argv):  # the same store in JupyterLab, not a demo of its own
        jupyter = str(Path(sys.executable).parent / "jupyter")
        os.execv(jupyter, [jupyter, "lab", str(HERE)])
        return 0  # not reached: execv replaces this process
    out = HERE / "executed"
    out.mkdir(exist_ok=True)
    failed = 0
    for path in sorted(HERE.glob("*.ipynb")):
        t = time.monotonic()
        print(f"{path.name}: running on {home} ...", flush=True)
        book = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(book, timeout=1800, kernel_name="python3",
                                         resources={"metadata": {"path": str(HERE)}})
        try:
            client.execute()
            print(f"{path.name}: ok ({time.monotonic() - t:.0f} s) -> {out / path.name}", flush=True)
        except nbclient.exceptions.CellExecutionError as e:
            failed += 1
            print(f"{path.name}: FAILED: {str(e).splitlines()[-1] if str(e) else e}", file=sys.stderr, flush=True)
        finally:
            nbformat.write(book, out / path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
