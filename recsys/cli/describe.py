"""``recsys items describe``: descriptions written from item images (:mod:`recsys.describe`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from recsys.cli._common import JsonOpt, emit_json, err, interrupted_status, open_store, progress_bar

if TYPE_CHECKING:
    from recsys.describe import DescribeReport


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
    committed = [0, 0]  # items done (each chunk commits), of how many

    try:
        with progress_bar("describe") as update:
            def progress(stage: str, done: int, total: int) -> None:
                if stage == "items":
                    committed[:] = [done, total]
                update(stage, done, total)

            report = describe_items(open_store(), get_settings(), vocab, only_missing=only_missing,
                                    min_confidence=min_confidence, limit=limit, item_ids=item_ids,
                                    neighbours=neighbours, progress=progress)
    except KeyboardInterrupt as e:
        done, total = committed
        said = (f"the first {done} of {total} items' descriptions were written (each chunk commits); a re-run "
                "writes them again" if done else "nothing written")
        err.print(f"interrupted; {said}", markup=False)
        raise typer.Exit(interrupted_status(e)) from None
    say_report(report)
    if json_out:
        emit_json(report.to_dict())


def say_report(report: DescribeReport) -> None:
    """The summary line, the warnings and the first errors on stderr (ids, reasons and names printed as they are:
    "[generic, recsys-lite@...]" was taken for rich markup and dropped)."""
    notes = [f"{report.withdrawn} earlier descriptions removed"] if report.withdrawn else []
    notes += [f"{n} descriptions written with vocabulary {old!r} were replaced" for old, n in report.replaced.items()]
    extra = f" ({'; '.join(notes)})" if notes else ""
    said = ", ".join(f"{name} {c['written']}" for name, c in report.facets.items())
    _say(f"{report.described} of {report.items} items described, {report.unconfident} with nothing confident "
         f"to say{extra}, {report.failed} without a decodable image, {report.seconds:.1f}s "
         f"[{report.vocabulary}, {report.encoder_id}]" + (f"; labels written per facet: {said}" if said else ""))
    for line in report.warnings:
        _say(f"warning: {line}")
    for item_id, reason in list(report.errors.items())[:10]:
        _say(f"  {item_id}: {reason}")


def _say(text: str) -> None:
    err.print(escape(text))


def register(app: typer.Typer) -> None:
    """Add ``describe`` to the ``items`` group of ``app`` (the root app)."""
    items = next((g.typer_instance for g in app.registered_groups if g.name == "items" and g.typer_instance), None)
    if items is None:  # a programming error: the root app adds its groups before the later stages register
        raise LookupError("the app has no `items` group to add `describe` to; add it before registering")
    items.command("describe")(items_describe)
