"""``recsys ranker list|rollback``: ranker generations, like ``recsys index list|rollback``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recsys.cli._common import JsonOpt, emit_json, err

app = typer.Typer(help="Ranker generations: list, roll back.", no_args_is_help=True)



@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """Generations on disk, oldest first; the served one is marked with *, those the index cannot use (another
    encoder or dimension) or damaged with ! (the served one too: *!), each with the reason."""
    from recsys.config import get_settings
    from recsys.experiments.rankers import served_vectors
    from recsys.ranking import rankers_root
    from recsys.ranking.artifact import current_version, damage
    from recsys.ranking.generations import list_generations, newest_usable

    settings = get_settings()
    root = rankers_root(settings)
    cur = current_version(root)
    encoder_id, dim = served_vectors(settings)
    rows: list[dict[str, Any]] = []
    for g in list_generations(root):
        why = g.incompatibility(encoder_id, dim)
        rows.append({"version": g.version, "ranker_id": g.ranker_id, "current": g.version == cur,
                     "created_at": g.created_at, "encoder_id": g.encoder_id, "dim": g.dim, "events": g.events,
                     "compatible": why is None, "incompatible_reason": why, "damaged": damage(root / g.version),
                     "metrics": g.metrics, "network": g.has_net,
                     "no_network_reason": None if g.has_net else g.manifest.get("no_network_reason")})
    if json_out:
        emit_json(rows)
        return
    if not rows:
        err.print(f"no ranker generations under {root}; run `recsys train` (or `recsys build`)")
    for r in rows:  # rows on stdout (| grep, > file); what is wrong and what to run stays on stderr
        typer.echo(_row_line(r))
    if rows and not any(r["current"] for r in rows):
        usable = newest_usable(root, encoder_id, dim)
        err.print(f"none is served (CURRENT is {'missing' if cur is None else f'{cur!r}, not on disk'}): " + (
            f"`recsys ranker rollback {usable}` serves the newest intact one that fits the served index (one with "
            "a network first)"
            if usable else "none is intact and fits the served index: run `recsys train` (or `recsys build`)"))


def _row_line(r: dict[str, Any]) -> str:
    """One generation as `list` prints it: a two-character mark (* served, ! unusable), then why it is unusable
    or has no network."""
    unusable = not r["compatible"] or bool(r["damaged"])
    mark = ("*" if r["current"] else " ") + ("!" if unusable else " ")
    notes = ""
    why = r["incompatible_reason"]
    if r["damaged"] and r["damaged"] != why:
        notes += f"  damaged ({r['damaged']}): `recsys train` replaces it"
    elif why:  # an intact generation of an older format or feature list is not damaged: this version cannot read it
        older = "was saved in format" in why or "another feature list" in why
        notes += f"  {'made by another version of recsys' if older else 'the served index cannot use it'}: {why}"
    if not r["network"]:
        reason = f" ({r['no_network_reason']})" if r["no_network_reason"] else ""
        notes += f"  no network: ranks in candidate order{reason}"
    return (f"{mark} {r['version']}  {r['created_at'][:19]}  {r['events'] or 0:>9} events  "
            f"{r['encoder_id']}{notes}")


@app.command("rollback")
def rollback(
    version: Annotated[str | None, typer.Argument(help="generation to serve (default: the one before the current)")]
    = None,
    json_out: JsonOpt = False,
) -> None:
    """Serve an earlier ranker (running servers pick it up on their next refresh). One trained on other vectors than
    the served index's is refused and nothing changes. When CURRENT names a generation that is gone, the default is
    the newest intact one that fits the served index. Waits for a `recsys train` that is saving, so the two never
    interleave (a training that saves after the rollback serves its new ranker)."""
    from recsys.config import get_settings
    from recsys.experiments.rankers import served_vectors
    from recsys.ranking import rankers_root
    from recsys.ranking.generations import rollback as do_rollback

    settings = get_settings()
    encoder_id, dim = served_vectors(settings)
    version = do_rollback(rankers_root(settings), version, encoder_id=encoder_id, dim=dim)
    err.print(f"current ranker generation: {version}")
    if json_out:
        emit_json({"current": version, "ranker_id": f"ranker-{version}"})


def register(root: typer.Typer) -> None:
    """Called by ``recsys.cli`` to add ``recsys ranker ...``."""
    root.add_typer(app, name="ranker")
