"""``recsys items describe``: descriptions written from item images (:mod:`recsys.describe`)."""

from __future__ import annotations

from typing import Annotated

import typer

from recsys.cli._common import JsonOpt, emit_json, err, open_store, progress_bar


def items_describe(
    vocabulary: Annotated[str | None, typer.Option(
        "--vocabulary", help="a TOML/JSON vocabulary file, or a shipped one by name: generic (default), hm")] = None,
    only_missing: Annotated[bool, typer.Option(
        "--only-missing", help="only items whose own title and description are shorter than "
                               "encoder.generated_text_below characters")] = False,
    min_confidence: Annotated[float | None, typer.Option(
        "--min-confidence", min=0.0, max=1.0, help="score a facet's best label needs to be written (default: "
                                                   "the vocabulary's)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="describe at most this many items")] = None,
    item_ids: Annotated[list[str] | None, typer.Option("--item", help="describe this item (repeatable)")] = None,
    neighbours: Annotated[int | None, typer.Option(
        "--neighbours", min=0, help="image neighbours among the other items that vote for a facet naming a field "
                                    "(default: the vocabulary's, 30; 0: zero-shot only)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a short description of each item from its image (colour, pattern, type, material...), stored apart
    from the merchant's text and marked as generated; re-running replaces it (or removes it where nothing is sure
    any more). Searchable at once; used for the text vector of items whose own text is poor at the next `recsys
    embed`."""
    from recsys.config import get_settings
    from recsys.describe import describe_items, load_vocabulary

    vocab = load_vocabulary(vocabulary)
    with progress_bar("describe") as update:
        report = describe_items(open_store(), get_settings(), vocab, only_missing=only_missing,
                                min_confidence=min_confidence, limit=limit, item_ids=item_ids,
                                neighbours=neighbours,
                                progress=update)
    withdrawn = f" ({report.withdrawn} earlier descriptions removed)" if report.withdrawn else ""
    err.print(f"{report.described} of {report.items} items described, {report.unconfident} with nothing confident "
              f"to say{withdrawn}, {report.failed} without a decodable image, {report.seconds:.1f}s "
              f"[{report.vocabulary}, {report.encoder_id}]")
    for item_id, reason in list(report.errors.items())[:10]:
        err.print(f"  {item_id}: {reason}")
    if json_out:
        emit_json(report.to_dict())


def register(app: typer.Typer) -> None:
    """Add ``describe`` to the root app's ``items`` group."""
    from recsys.cli import data

    data.items_app.command("describe")(items_describe)
