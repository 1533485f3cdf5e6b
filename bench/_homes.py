"""Checks the benchmark scripts make on the data directories (homes) they are given, before anything is opened,
started or removed: one clear line naming the path and the flag, never a traceback, and nothing created at a
mistyped path (``Store.open`` would create and migrate an empty store there).

A built store, as recsys itself tells one (``recsys.cli._common.open_store``, ``recsys.index.layout``): its database
(``recsys.db`` in the home unless a database URL is configured) and a current index generation (``index/CURRENT``
naming a generation whose ``manifest.json`` is there), which ``recsys build`` writes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BUILD_HINT = "run `recsys build` there (RECSYS_HOME=DIR recsys import ... && recsys build)"


class InputError(Exception):
    """A benchmark's input is unusable: the message names the path, the flag and what to do."""


def unbuilt_reason(home: Path, database_url: str | None = None) -> str | None:
    """Why ``home`` is not a built store (what is missing, where), or None when it is one."""
    home = Path(home)
    if not home.is_dir():
        return f"{home} does not exist" if not home.exists() else f"{home} is not a folder"
    if not database_url and not (home / "recsys.db").is_file():
        return f"no store database {home / 'recsys.db'}"
    index = home / "index"
    try:
        current = (index / "CURRENT").read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return f"no index generation under {index} (no {index / 'CURRENT'})"
    except OSError as e:
        return f"{index / 'CURRENT'} is unreadable ({e.strerror})"
    if not current or not (index / "generations" / current / "manifest.json").is_file():
        return f"{index / 'CURRENT'} names generation {current!r}, which is not complete under {index / 'generations'}"
    return None


def require_built(home: Path, flag: str, database_url: str | None = None) -> None:
    """InputError unless ``home`` (given as ``flag``) is a built store."""
    why = unbuilt_reason(home, database_url)
    if why:
        sep = "" if flag.endswith("=") else " "
        raise InputError(f"{flag}{sep}{home}: not a built recsys store ({why}); {BUILD_HINT}")


def require_built_settings(flag: str = "RECSYS_HOME") -> Any:
    """The environment's settings (``RECSYS_HOME``, default ``./.recsys``), once their home is a built store;
    exits with one line otherwise. For the scripts that open ``Store.open(get_settings())`` or ``Recommender()``."""
    from recsys.config import get_settings

    settings = get_settings()
    home = Path(settings.home)
    if flag == "RECSYS_HOME" and not os.environ.get("RECSYS_HOME"):
        flag = "RECSYS_HOME (not set: the default)"
    exit_if_unusable(lambda: require_built(home, flag, settings.database_url))
    return settings


def require_files(flag: str, given: Path, *needed: Path, hint: str) -> None:
    """InputError unless each of ``needed`` (files a script reads from ``given``, given as ``flag``) is a file: one
    line naming what is missing and ``hint`` (what to give instead)."""
    missing = [str(p) for p in needed if not Path(p).is_file()]
    if missing:
        raise InputError(f"{flag} {given}: no {' and no '.join(missing)}; {hint}")


def require_test_events(path: Path) -> None:
    """InputError unless ``path``, the withheld file of a ``bench/withheld.py`` run, is a file."""
    if not Path(path).is_file():
        raise InputError(f"test events {path}: no such file; give the withheld file of a bench/withheld.py run "
                         "(<scratch>/withheld_<dataset>_<part>/withheld_*), whose home is RECSYS_HOME")


def exit_if_unusable(check: Callable[[], None]) -> None:
    """Run ``check``; an InputError becomes a one-line exit (status 1), no traceback."""
    try:
        check()
    except InputError as e:
        raise SystemExit(f"{Path(sys.argv[0]).name}: {e}") from None


def holds(outer: Path, inner: Path) -> bool:
    """Whether ``inner`` is ``outer`` or inside it (both resolved: links and ``..`` followed)."""
    a, b = Path(outer).resolve(), Path(inner).resolve()
    return a == b or a in b.parents


@contextlib.contextmanager
def generated_demo(script: str) -> Iterator[Path]:
    """A demo store built by ``recsys demo --no-serve`` in a temporary directory for ``script`` (its name, for the
    messages), removed afterwards whatever happens (~190 MB); exits with one line when the demo fails."""
    with tempfile.TemporaryDirectory(prefix=f"recsys-{script}-") as tmp:
        home = Path(tmp) / "home"
        demo = subprocess.run([str(Path(sys.executable).parent / "recsys"), "demo", "--no-serve"],
                              cwd=Path(__file__).resolve().parents[1], stdout=sys.stderr,
                              env={**os.environ, "RECSYS_HOME": str(home)})
        if demo.returncode:
            raise SystemExit(f"{script}.py: `recsys demo` failed ({demo.returncode}); its message is above")
        yield home
