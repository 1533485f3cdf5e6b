"""Run every notebook top to bottom against the store of ``RECSYS_HOME`` (default ``./.recsys``, what `make demo`
built) and write the executed copies, outputs included, to ``notebooks/executed/``:

    make notebooks                       # the demo store
    RECSYS_HOME=/data/hm make notebooks  # a built H&M store

The notebooks write (a like in 02): point them at a store you may change.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    import nbclient
    import nbformat

    home = Path(os.environ.setdefault("RECSYS_HOME", ".recsys")).resolve()
    if not (home / "recsys.db").exists() and not os.environ.get("RECSYS_DATABASE_URL"):
        print(f"no recsys store at {home}: run `make demo` first, or set RECSYS_HOME to a built store",
              file=sys.stderr)
        return 2
    os.environ["RECSYS_HOME"] = str(home)
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
