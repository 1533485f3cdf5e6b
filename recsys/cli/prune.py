"""``recsys prune``: remove the encoder heads, vector snapshots and caches, and ranker generations nothing references
(:mod:`recsys.prune` says what stays and why)."""

from __future__ import annotations

from typing import Annotated

import typer

from recsys.cli._common import JsonOpt, emit_json, err


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be removed, with sizes, and remove "
                                                            "nothing")] = False,
    keep_rankers: Annotated[int | None, typer.Option("--keep-rankers", min=1, help="ranker generations kept for "
                                                     "`recsys ranker rollback`, newest first (default: "
                                                     "RECSYS_INDEX__KEEP_GENERATIONS)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove old encoder heads, vectors, caches and rankers that nothing references any more.

    Encoder heads, their vector snapshots and caches, and ranker generations. Kept: each preset's current heads and
    any newer, those an index generation or a kept ranker names,
    the current ranker and any newer, those experiments' variants name, and the newest --keep-rankers. Refused while
    a build, train or encoder fit runs; exit 1 when an artifact could not be removed (the others are)."""
    from recsys.config import get_settings
    from recsys.prune import prune as do_prune

    report = do_prune(get_settings(), dry_run=dry_run, keep_rankers=keep_rankers)
    for k in report.kept:
        err.print(f"kept {k['kind']} {k['path']}: {k['reason']}", markup=False, highlight=False)
    for f in report.failed:
        err.print(f"could not remove {f['kind']} {f['path']}: {f['error']}", markup=False, highlight=False)
    if json_out:
        emit_json(report.to_dict())
    else:
        verb = "would remove" if dry_run else "removed"
        for r in report.removed:
            typer.echo(f"{verb}  {r['kind']:<8} {r['path']}  {_mb(r['bytes'])}")
        failed = f", {len(report.failed)} could not be removed" if report.failed else ""
        done = (f"dry run: {len(report.removed)} artifact(s) would be removed, {_mb(report.bytes_freed)} would be "
                "freed (nothing was removed)" if dry_run else
                f"{len(report.removed)} artifact(s) removed, {_mb(report.bytes_freed)} freed")
        typer.echo(f"{done}; {len(report.kept)} kept{failed}")
    if report.failed:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Called by ``recsys.cli`` to add ``recsys prune``."""
    root.command("prune")(prune)
