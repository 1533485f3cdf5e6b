"""``recsys backup DEST``: a consistent copy of a live data directory (:mod:`recsys.backup` says what and how)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli._common import JsonOpt, emit_json, err


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def backup(
    dest: Annotated[Path, typer.Argument(help="where the backup goes: a new path or an empty directory, outside "
                                              "the data directory (ideally on another disk)")],
    with_caches: Annotated[bool, typer.Option("--with-caches", help="also copy cache/ (vector caches, tower "
                                              "features) and onnx/: a restored store then needs no re-encoding")
                           ] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, help="seconds to wait for a running build, train or "
                                        "encoder fit (default 0: refuse at once)")] = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """Back up the data directory into DEST, also while `recsys serve` runs.

    The store (SQLite, an online consistent copy), the served index generation, the current ranker, the encoder
    heads and vectors they use, secrets/ and the other files the server reads at start. Restore: `RECSYS_HOME=DEST
    recsys serve`. Refused while a build, train or encoder fit runs (see --wait)."""
    from recsys.backup import backup as do_backup
    from recsys.config import get_settings

    report = do_backup(get_settings(), dest, with_caches=with_caches, wait_s=wait)
    for note in report.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    if report.not_copied:
        err.print(f"not copied (the server starts without them; item images among them stay where they are): "
                  f"{', '.join(report.not_copied)}", markup=False, highlight=False)
    if json_out:
        emit_json(report.to_dict())
        return
    for p in report.parts:
        typer.echo(f"copied  {p.name:<12} {p.path:<28} {p.files:>5} file(s)  {_mb(p.bytes)}")
    files = sum(p.files for p in report.parts)
    typer.echo(f"backup written to {report.dest} in {report.seconds:.1f} s: {_mb(report.total_bytes)} in {files} "
               f"file(s); restore with RECSYS_HOME={report.dest} recsys serve")


def register(root: typer.Typer) -> None:
    """Called by ``recsys.cli`` to add ``recsys backup``."""
    root.command("backup")(backup)
