"""Encoder commands: ``recsys encoder list|fit|info``, ``recsys embed``, ``recsys items tag``.

Wired by :func:`register` (the root CLI calls it). Heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recsys.cli._common import JsonOpt, emit_json, err, open_store, progress_bar

if TYPE_CHECKING:
    from recsys.config import Settings
    from recsys.encoders.registry import Preset

encoder_app = typer.Typer(help="Encoder presets and fitting.", no_args_is_help=True)


@encoder_app.command("list")
def encoder_list(json_out: JsonOpt = False) -> None:
    """The encoder presets (built-in and <home>/presets/*.json); the configured one is marked."""
    from recsys.config import get_settings
    from recsys.encoders.registry import list_presets

    settings = get_settings()
    rows = [{"name": p.name, "kind": p.kind, "current": p.name == settings.encoder.preset,
             "offline": not p.needs_network, "description": p.description} for p in list_presets(settings)]
    if json_out:
        emit_json(rows)
        return
    for r in rows:
        mark = "*" if r["current"] else " "
        # hub presets' own descriptions say it already: said once
        net = "" if r["offline"] or "needs network" in str(r["description"]) else " [needs network once]"
        typer.echo(f"{mark} {r['name']:<20} {r['kind']:<10} {r['description']}{net}")


@encoder_app.command("fit")
def encoder_fit(
    epochs: Annotated[int | None, typer.Option(min=1, help="training epochs over the pairs")] = None,
    val_pairs: Annotated[int, typer.Option(min=0, help="pairs held out for validation")] = 1000,
    json_out: JsonOpt = False,
) -> None:
    """Fit the projection heads on the catalogue's (image, text) pairs; the heads become the current ones. It waits
    for a running build or train, whose own heads would otherwise replace these when it finishes."""
    from recsys.config import get_settings
    from recsys.encoders.fit import fit_encoder
    from recsys.encoders.training import FitParams
    from recsys.jobs import jobs_lock

    settings = get_settings()
    params = FitParams(val_pairs=val_pairs, seed=settings.ranking.seed)
    if epochs:
        params.epochs = epochs
    store = open_store()  # a missing store is refused before the lock's file would create the directory
    with jobs_lock(settings), progress_bar("encoder fit") as update:
        report = fit_encoder(store, settings, update, params)
    i2t, t2i = report.image_to_text_recall_at_10, report.text_to_image_recall_at_10
    recall = (f"recall@10 image->text {i2t:.3f}, text->image {t2i:.3f}" if i2t is not None and t2i is not None
              else f"held-out recall@10 {report.recall_note or 'not measured'}")
    err.print(f"encoder {report.encoder_id}: {report.pairs_train} training pairs, {report.pairs_val} held out; "
              f"{recall}", markup=False)
    if json_out:
        emit_json(report.to_dict())


@encoder_app.command("info")
def encoder_info(json_out: JsonOpt = False) -> None:
    """The configured encoder: id, dimension, fitted heads and their validation metrics, and whether its ONNX export
    is there. Read from the heads' manifest: no model is loaded, nothing is exported or written."""
    from recsys.config import get_settings

    open_store(upgrade=False).dispose()  # no store here: refused in one line like the other commands, nothing made
    info = _encoder_facts(get_settings())
    if json_out:
        emit_json(info)
    if info.get("problem"):
        err.print(f"error: {info['problem']}", soft_wrap=True)
    if json_out:
        raise typer.Exit(1 if info.get("problem") else 0)
    for k, v in info.items():
        if k == "metrics":
            typer.echo("metrics:" + ("" if v else " none (`recsys encoder fit` measures them)"))
            for name, value in v.items():
                typer.echo(f"  {name:<26} {_number(value)}")
        elif k == "onnx_exported" and v is not None:
            typer.echo(f"{k}: " + ("yes" if v else "no (the first `recsys embed` or query exports it, once)"))
        elif k != "problem":
            typer.echo(f"{k}: {'-' if v is None else v}")
    if info.get("problem"):
        raise typer.Exit(1)


def _encoder_facts(settings: Settings) -> dict[str, Any]:
    """What ``encoder info`` says, from the preset and the current heads' manifest (a model load would export ONNX
    towers, about 100 MB, or fetch a hub model: a query must not)."""
    import json

    from recsys.encoders.encoder import configured_towers_id, current_heads_dir, heads_root
    from recsys.encoders.registry import get_preset
    from recsys.errors import IncompatibleArtifact

    p = get_preset(settings.encoder.preset, settings)
    d = current_heads_dir(settings, p)
    pointer = heads_root(settings, p) / "CURRENT"
    if d is None and pointer.exists():  # as get_encoder refuses it: not "unfitted"
        raise IncompatibleArtifact(f"{pointer} names encoder heads that are not under {pointer.parent} (moved or "
                                   "deleted); restore them, or run `recsys encoder fit` (or `recsys build`)")
    m: dict[str, Any] = {}
    if d is not None:
        try:
            m = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IncompatibleArtifact(f"cannot read {d / 'manifest.json'} ({e}); run `recsys encoder fit` to fit "
                                       "new heads") from e
    towers = configured_towers_id(settings, p)  # hashes a local checkpoint: once
    runtime, exported = _onnx_export(settings, p, towers)
    info: dict[str, Any] = {"encoder_id": f"{p.name}@{m.get('version') or 'unfitted'}", "preset": p.name,
                            "dim": m.get("dim") or _unfitted_dim(p), "fitted": d is not None,
                            "metrics": m.get("metrics", {}), "runtime": runtime, "onnx_exported": exported}
    if m.get("recall_note"):  # why the metrics hold no held-out recall
        info["recall_note"] = m["recall_note"]
    if d is not None and m.get("towers") and towers is not None and m["towers"] != towers:
        # what every query and `recsys embed` then refuse (Heads.load): the one fact this command is run to learn
        info["problem"] = (f"the heads were fitted for towers {m['towers']}, not the configured {towers} (another "
                           "RECSYS_ENCODER__RUNTIME, or a local checkpoint replaced): queries and `recsys embed` "
                           "refuse them; switch back, or run `recsys encoder fit` (then `recsys build` for the index)")
    return info


def _unfitted_dim(p: Preset) -> int | None:
    """The dimension unfitted heads make (``new_heads``): a residual head keeps the towers' width, told by the model
    config without loading the model; None when it cannot be told so."""
    if p.head != "residual":
        return p.dim or 256
    cfg = p.model_cfg
    if cfg is None and p.arch:
        try:
            import open_clip

            cfg = open_clip.get_model_config(p.arch)
        except Exception:  # an open_clip without it, or a broken install: the dimension stays untold
            cfg = None
    dim = (cfg or {}).get("embed_dim")
    return int(dim) if isinstance(dim, int) else None


def _onnx_export(settings: Settings, p: Preset, towers: str | None) -> tuple[str, bool | None]:
    """The runtime the towers (``towers``: the configured ones' id) run on, and whether its ONNX export is in
    ``<home>/onnx`` (None: no export used). Only looked at: the export is a cache that embedding and queries fill."""
    from recsys.encoders.onnx_runtime import export_paths, resolve_runtime
    from recsys.encoders.towers import pick_device
    from recsys.errors import RecsysError

    try:
        runtime = resolve_runtime(settings.encoder.runtime, pick_device(settings.encoder.device)[0], p.kind)
    except (RecsysError, RuntimeError):  # a runtime or device that cannot be used: loading says why
        return settings.encoder.runtime, None
    if runtime == "torch" or towers is None:
        return runtime, None
    return runtime, all(f.is_file() for f in export_paths(settings.home / "onnx", towers.removesuffix("+int8-text"),
                                                         runtime))


def _number(v: Any) -> str:
    """A metric as read: whole numbers without ".0", others to 4 decimals."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:.4f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def embed(
    engine: Annotated[str, typer.Option("--engine", help="local, or ray (Ray Data actor pool; needs "
                                                        "the ray extra)")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster: HOST:PORT (the head's GCS, "
                                                    "6379), ray://HOST:PORT (the Ray Client, 10001), auto or local; "
                                                    "default: a local Ray")] = None,
    ray_workers: Annotated[int, typer.Option("--ray-workers", min=1, help="Ray actors (one encoder each)")] = 2,
    json_out: JsonOpt = False,
) -> None:
    """Embed the catalogue (only new or changed items are encoded); broken media are recorded on the item."""
    from recsys.config import get_settings

    if engine not in ("local", "ray"):
        raise typer.BadParameter("--engine must be local or ray", param_hint="--engine")
    with progress_bar("embed") as update:
        if engine == "ray":
            from recsys.encoders.ray_engine import embed_catalog_ray

            report = embed_catalog_ray(open_store(), get_settings(), lambda d, t: update("items", d, t),
                                       address=ray_address, workers=ray_workers)
        else:
            from recsys.encoders.embed import embed_catalog

            report = embed_catalog(open_store(), get_settings(), lambda d, t: update("items", d, t))
    # markup off: "[encoder id]" and a path with "[red]" in it are text, not rich styles
    err.print(f"{report.items} items ({report.encoded} encoded, {report.cached} cached), {report.with_image} with an "
              f"image, {report.broken_media} broken media, {report.seconds:.1f}s [{report.encoder_id}]",
              markup=False)
    for item_id, reason in list(report.errors.items())[:10]:
        err.print(f"  {item_id}: {reason}", markup=False)
    if json_out:
        emit_json(report.to_dict())


def items_tag(
    # no square brackets in a help text: rich markup takes "[labels]" for a style and drops it
    vocabulary: Annotated[Path, typer.Option("--vocabulary", help="a JSON object of facet to list of labels, "
                                                                  "'facet: a, b' lines, or an `items describe` "
                                                                  "vocabulary: a .toml or .json file, or generic or "
                                                                  "hm (its labels only)", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="labels kept per facet and item (a count of labels, "
                                                              "not of results as --k elsewhere)")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Zero-shot tags from text-image similarity, stored with their scores (see `recsys items show ID`)."""
    from recsys.config import get_settings
    from recsys.encoders.tagging import read_vocabulary, tag_items

    vocab = read_vocabulary(vocabulary)
    with progress_bar("tag") as update:
        report = tag_items(open_store(), get_settings(), vocab, top_k=top_k,
                           progress=lambda d, t: update("facets", d, t))
    untagged = f"; {report.untagged} items with neither text nor image left untagged" if report.untagged else ""
    err.print(f"{report.tags} tags on {report.items} items over {report.facets} facets{untagged} "
              f"[{report.encoder_id}]", markup=False)
    if json_out:
        emit_json(report.to_dict())


def register(app: typer.Typer) -> None:
    """Add the encoder commands to the root app (and ``tag`` to its ``items`` group)."""
    from recsys.cli import data

    app.add_typer(encoder_app, name="encoder")
    app.command("embed")(embed)
    data.items_app.command("tag")(items_tag)
