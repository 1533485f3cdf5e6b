"""Encoder commands: ``recsys encoder list|fit|info``, ``recsys embed``, ``recsys items tag``.

Wired by :func:`register` (the root CLI calls it). Heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli._common import JsonOpt, emit_json, err, open_store, progress_bar

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
        net = "" if r["offline"] else " [needs network once]"
        typer.echo(f"{mark} {r['name']:<20} {r['kind']:<10} {r['description']}{net}")


@encoder_app.command("fit")
def encoder_fit(
    epochs: Annotated[int | None, typer.Option(min=1, help="training epochs over the pairs")] = None,
    val_pairs: Annotated[int, typer.Option(min=0, help="pairs held out for validation")] = 1000,
    json_out: JsonOpt = False,
) -> None:
    """Fit the projection heads on the catalogue's (image, text) pairs; the heads become the current ones."""
    from recsys.config import get_settings
    from recsys.encoders.fit import fit_encoder
    from recsys.encoders.training import FitParams

    settings = get_settings()
    params = FitParams(val_pairs=val_pairs, seed=settings.ranking.seed)
    if epochs:
        params.epochs = epochs
    with progress_bar("encoder fit") as update:
        report = fit_encoder(open_store(), settings, update, params)
    i2t, t2i = report.image_to_text_recall_at_10, report.text_to_image_recall_at_10
    recall = (f"recall@10 image->text {i2t:.3f}, text->image {t2i:.3f}" if i2t is not None and t2i is not None
              else f"held-out recall@10 {report.recall_note or 'not measured'}")
    err.print(f"encoder {report.encoder_id}: {report.pairs_train} training pairs, {report.pairs_val} held out; "
              f"{recall}", markup=False)
    if json_out:
        emit_json(report.to_dict())


@encoder_app.command("info")
def encoder_info(json_out: JsonOpt = False) -> None:
    """The configured encoder: id, dimension, fitted heads and their validation metrics."""
    from recsys.encoders.encoder import get_encoder

    enc = get_encoder()
    info = {"encoder_id": enc.id, "preset": enc.preset.name, "dim": enc.dim, "fitted": enc.fitted,
            "metrics": enc.manifest.get("metrics", {})}
    if enc.manifest.get("recall_note"):  # why the metrics hold no held-out recall
        info["recall_note"] = enc.manifest["recall_note"]
    if json_out:
        emit_json(info)
    else:
        for k, v in info.items():
            typer.echo(f"{k}: {v}")


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
