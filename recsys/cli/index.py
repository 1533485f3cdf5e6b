"""``recsys index build|list|rollback|info``: index generations (DESIGN.md decision 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from recsys.cli._common import JsonOpt, emit_json, err, open_store, progress_bar

if TYPE_CHECKING:
    from pathlib import Path

    from recsys.config import Settings

app = typer.Typer(help="FAISS index generations: build, list, roll back.", no_args_is_help=True)



@app.command("build")
def build(
    full: Annotated[bool, typer.Option("--full", help="rebuild everything (no delta)")] = False,
    factory: Annotated[str | None, typer.Option(help="FAISS factory string, e.g. 'HNSW32,Flat' or 'IVF4096,PQ64' "
                                                     "(a full build when the served generation has another)")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="publish even when the database lacks most of the served "
                                                        "generation's items (a catalogue replaced on purpose)")]
    = False,
    json_out: JsonOpt = False,
) -> None:
    """Index the catalogue's vectors: skipped when nothing changed, a delta for a few changes, else a full build."""
    from recsys.config import get_settings
    from recsys.index import build_from_catalog

    settings = get_settings()
    with progress_bar("index") as update:
        # a --factory (or RECSYS_INDEX__FACTORY) other than the served generation's makes the build full
        report = build_from_catalog(open_store(), settings, update, mode="full" if full else "auto",
                                    factory=factory, force=force)
    if report.get("reason"):
        err.print(f"index: {report['reason']}; a full build instead")
    err.print(f"index: {report['action']} -> generation {report['generation']} ({report['items']} items)")
    if report.get("caught_up"):
        c = report["caught_up"]
        err.print(f"index: another generation was published meanwhile; its changes ({c['changed']} new or changed, "
                  f"{c['removed']} removed) were added as a delta over {c['over']}")
    unfit = _ranker_misfit(settings, report["generation"])
    if unfit:
        err.print(f"index: warning: the current ranker cannot rank generation {report['generation']} ({unfit}); "
                  "run `recsys train` (or `recsys build`): until then a running server keeps its previous index and "
                  "ranker, and a newly started one or the CLI gives no recommendations")
    if json_out:
        emit_json(report)


def _ranker_misfit(settings: Settings, generation: str) -> str | None:
    """Why the current ranker cannot rank the vectors of index ``generation`` (another encoder or dimension), or
    None (it can, or none is current): a new encoder's index is published without a word otherwise."""
    from recsys.errors import IncompatibleArtifact, NoIndex, NotFound, RankerError
    from recsys.index import index_root
    from recsys.index.layout import generation_path
    from recsys.index.layout import read_manifest as index_manifest
    from recsys.ranking import current_generation, rankers_root, read_manifest
    from recsys.ranking.artifact import check_compatible

    path = current_generation(rankers_root(settings))
    if path is None:
        return None
    try:
        m = index_manifest(generation_path(index_root(settings), generation))
        check_compatible(read_manifest(path), path.name, m.encoder_id, m.dim)
    except IncompatibleArtifact as e:
        return e.message
    except (NoIndex, NotFound, RankerError):  # no such generation or ranker to compare: nothing to warn about
        return None
    return None


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """Generations on disk, oldest first, with the bytes each holds; the served one is marked with * (a CURRENT
    naming none of them is said), one a build wrote and has not published (or never will: it was interrupted) is
    said, as is one the current ranker cannot rank. The closing line gives what they take on disk together: a delta
    shares its base's files through hard links, counted once."""
    from recsys.config import get_settings
    from recsys.index import current_id, disk_bytes, incomplete_generations, index_root, list_generations

    settings = get_settings()
    root = index_root(settings)
    cur = current_id(root)
    rows: list[dict[str, Any]] = [
        {"generation_id": m.generation_id, "current": m.generation_id == cur, "kind": m.kind,
         "created_at": m.created_at, "encoder_id": m.encoder_id, "dim": m.dim, "items": m.item_count,
         "factory": m.factory, "recall_at_10": m.recall_at_10.get("fused"), "watermark": m.watermark,
         "bytes": sum(m.sizes.values()) if m.sizes else _bytes_on_disk(root, m.generation_id),
         **_pairing(settings, root, m.generation_id, cur)}
        for m in list_generations(root)]
    if left := incomplete_generations(root):
        err.print(f"{len(left)} director{'y' if len(left) == 1 else 'ies'} under {root / 'generations'} without a "
                  f"manifest ({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}): left by an interrupted prune, "
                  "never served; the next `recsys index build` removes them")
    if cur is not None and not any(r["current"] for r in rows):  # deleted by hand, or its manifest unreadable
        err.print(f"CURRENT names generation {cur}, which is missing or unreadable: nothing can be served; "
                  + ("run `recsys index rollback` (serves the newest intact one)" if rows else
                     "run `recsys index build`"))
    elif cur is None and rows:
        err.print(f"no generation is current (the CURRENT file is missing); serve one with `recsys index rollback "
                  f"--to {rows[-1]['generation_id']}`, or run `recsys index build`")
    if not json_out:
        if not rows and cur is None:
            err.print(f"no index generations under {root}; run `recsys index build`")
        # the rows on stdout (`| grep`, `> file`); what is wrong and what to run stays on stderr above
        for r in rows:
            typer.echo(f"{'*' if r['current'] else ' '} {r['generation_id']}  {r['kind']:<5} {r['items']:>9} items  "
                       f"{r['bytes'] / 2**20:>8.1f} MB  {r['factory']:<16} recall@10 {r['recall_at_10']}  "
                       f"{r['encoder_id']}{_notes(r)}")
        if rows:
            typer.echo(f"{len(rows)} generation{'s' if len(rows) != 1 else ''}, {disk_bytes(root) / 2**20:.1f} MB "
                       "on disk (files a delta shares with its base counted once)")
    else:
        emit_json(rows)


UNPUBLISHED = "unpublished: left by an interrupted build, never served"
BUILDING = "pending: the running build serves it with the ranker it trains"


def _pairing(settings: Settings, root: Path, generation: str, cur: str | None) -> dict[str, Any]:
    """``unpublished`` (:data:`UNPUBLISHED`, :data:`BUILDING` or None) and ``ranker_misfit`` (why the current ranker
    cannot rank it, or None) of a listed generation."""
    from recsys.index.pairing import jobs_running, pending_id

    state = None
    if generation != cur and generation == pending_id(root):
        state = BUILDING if jobs_running(settings.home) else UNPUBLISHED
    return {"unpublished": state, "ranker_misfit": _ranker_misfit(settings, generation)}


def _notes(r: dict[str, Any]) -> str:
    """What a listed generation's line adds: unpublished, and the current ranker cannot rank it."""
    notes = f"  {r['unpublished']}" if r["unpublished"] else ""
    return notes + ("  the current ranker cannot rank it" if r["ranker_misfit"] else "")


@app.command("verify")
def verify(generation: Annotated[str | None, typer.Argument(help="generation id (default: current)")] = None,
           json_out: JsonOpt = False) -> None:
    """Check a generation's files and manifest against the checksums it was built with, and open it as a server
    does; exit 1 when anything is wrong."""
    from recsys.config import get_settings
    from recsys.index import index_root
    from recsys.index.checkup import check_generation
    from recsys.index.layout import damaged_remedy

    settings = get_settings()
    root = index_root(settings)
    c = check_generation(root, generation, settings.index)
    if c.ok:
        said = "; ".join(["intact", *c.notes])
    else:
        said = "".join([f"{len(c.bad_files)} corrupt or missing: {c.bad_files}. " if c.bad_files else "",
                        *(f"cannot be loaded: {p.rstrip('.')}. " for p in c.problems),
                        damaged_remedy(root, c.generation_id)])
    err.print(f"generation {c.generation_id}: {said}")
    if json_out:
        emit_json({"generation": c.generation_id, "ok": c.ok, "bad_files": c.bad_files, "problems": c.problems,
                   "notes": c.notes})
    if not c.ok:
        raise typer.Exit(1)


@app.command("rollback")
def rollback(
    to: Annotated[str | None, typer.Option("--to", help="generation id (default: the one before the current)")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="serve one the configured encoder cannot query, or one "
                                                        "the current ranker cannot rank")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Serve an earlier generation (running servers pick it up on their next refresh). One that the configured
    encoder cannot query (built with another encoder or dimension), or that the current ranker cannot rank
    (recommendations would be off: e.g. one an interrupted build left unpublished), is refused without --force."""
    from recsys.config import get_settings
    from recsys.encoders.encoder import query_encoder_of
    from recsys.index import index_root
    from recsys.index import rollback as do_rollback

    settings = get_settings()
    gid = do_rollback(index_root(settings), to, force=force, query_encoder=lambda e: query_encoder_of(settings, e),
                      ranker_fit=lambda g: _ranker_misfit(settings, g))
    err.print(f"current index generation: {gid}")
    if json_out:
        emit_json({"current": gid})


def register(root: typer.Typer) -> None:
    """Called by ``recsys.cli`` to add ``recsys index ...``."""
    root.add_typer(app, name="index")


def _bytes_on_disk(root: Path, generation_id: str) -> int:
    """A generation's bytes from its files, for a manifest written before sizes were recorded."""
    from recsys.index.layout import generations_dir

    return sum(p.stat().st_size for p in (generations_dir(root) / generation_id).rglob("*") if p.is_file())
