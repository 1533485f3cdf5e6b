"""``recsys feedback``: the online report of what served lists led to."""

from __future__ import annotations

from typing import Annotated

import typer

from recsys.cli._common import JsonOpt, emit_json, err, open_store

feedback_app = typer.Typer(help="The feedback loop: served lists, impressions and attributed events.",
                           no_args_is_help=True)


@feedback_app.command("report")
def report(since: Annotated[str | None, typer.Option("--since", help="only lists served from this time "
                                                                    "(ISO 8601, naive = UTC; or unix seconds)")] = None,
           json_out: JsonOpt = False) -> None:
    """Lists served and the clicks, likes, add-to-carts and purchases attributed to them (events carrying their
    recommendation_id), per source, ranker version and index generation: CTR and conversion rate with 95% Wilson
    intervals."""
    from recsys.feedback import feedback_report
    from recsys.feedback.report import parse_since

    when = parse_since(since) if since is not None else None  # an empty --since (an unset $SINCE) is refused
    data = feedback_report(open_store(), since=when)
    if json_out:
        emit_json(data)
        return
    if not data["groups"]:
        typer.echo("no served lists recorded" + (f" since {since}" if since else ""))
        return
    # a block per group, ids whole (`recsys index rollback --to` takes them), every count the JSON has
    total = {**data["totals"], "source": "total", "ranker_version": None, "index_generation": None}
    for g in [*data["groups"], total]:
        head = (f"{g['source']}  ranker {g['ranker_version'] or '-'}  index {g['index_generation'] or '-'}"
                if g is not total else "total (all groups)")
        typer.echo(head)
        typer.echo(f"  lists {g['lists']}, items served {g['items_served']}, impressions {g['impressions']}, "
                   f"clicks {g['clicks']}, likes {g['likes']}, add-to-carts {g['add_to_cart']}, "
                   f"purchases {g['purchases']}, unattributed {g['unattributed']}")
        typer.echo(f"  CTR {_rate(g['ctr'])}, conversion {_rate(g['conversion_rate'])} over {g['exposures']} "
                   f"{_BASIS.get(g['exposure_basis'], g['exposure_basis'])}")
    typer.echo(f"rates with their {data['confidence']:.0%} Wilson intervals; unattributed events are stored but kept "
               "out of the rates")


@feedback_app.command("trim")
def trim(older_than: Annotated[float, typer.Option("--older-than", help="days: served lists stored before then are "
                                                   "deleted (at least 1)")],
         impressions: Annotated[bool, typer.Option("--impressions", help="also delete the impression events stored "
                                                   "before then (they train nothing)")] = False,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would be deleted, delete nothing")] =
         False,
         json_out: JsonOpt = False) -> None:
    """Delete old served lists (and impressions): nothing else does, and every answered list adds a row. Safe beside
    a running server (short batches); run it from cron, e.g. daily with --older-than 90."""
    from recsys.feedback.retention import trim as do_trim

    def said(table: str, n: int) -> None:
        err.print(f"{table}: {n:,} deleted so far", markup=False, highlight=False)

    from recsys.config import get_settings

    shown_hours = get_settings().feedback.exclude_shown_hours
    if shown_hours > older_than * 24:  # the lists it reads would be gone
        err.print(f"warning: RECSYS_FEEDBACK__EXCLUDE_SHOWN_HOURS is {shown_hours:g}: lists shown up to then leave "
                  f"their items out, but --older-than {older_than:g} deletes the lists older than "
                  f"{older_than * 24:g} hours", markup=False, highlight=False)
    report = do_trim(open_store(), older_than, impressions=impressions, dry_run=dry_run, progress=said)
    if json_out:
        emit_json(report.to_dict())
        return
    verb = "would delete" if dry_run else "deleted"
    also = f" and {report.impressions:,} impression event(s)" if impressions else ""
    typer.echo(f"{verb} {report.served_lists:,} served list(s){also} stored before "
               f"{report.cut:%Y-%m-%d %H:%M} UTC" + (" (dry run: nothing was deleted)" if dry_run else ""))


_BASIS = {"impressions": "impressions", "items_served": "items served (no impressions posted)",
          "mixed": "exposures (impressions, or items served where a group has none)"}


def _rate(r: dict[str, float | None]) -> str:
    if r["rate"] is None:
        return "-"
    return f"{r['rate']:.3f} [{r['low']:.3f},{r['high']:.3f}]"


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")
