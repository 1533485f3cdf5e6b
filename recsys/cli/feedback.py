"""``recsys feedback``: the online report of what served lists led to."""

from __future__ import annotations

from typing import Annotated

import typer

from recsys.cli._common import JsonOpt, emit_json, open_store

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
    typer.echo(f"{'source':<20} {'ranker':<24} {'index':<24} {'lists':>7} {'impr':>7} {'clicks':>7} "
               f"{'buys':>6} {'CTR':>16} {'conversion':>16}")
    for g in [*data["groups"], {**data["totals"], "source": "total", "ranker_version": "", "index_generation": ""}]:
        typer.echo(f"{str(g['source'])[:20]:<20} {str(g['ranker_version'] or '')[:24]:<24} "
                   f"{str(g['index_generation'] or '')[:24]:<24} {g['lists']:>7} {g['impressions']:>7} "
                   f"{g['clicks']:>7} {g['purchases']:>6} {_rate(g['ctr']):>16} {_rate(g['conversion_rate']):>16}")


def _rate(r: dict[str, float | None]) -> str:
    if r["rate"] is None:
        return "-"
    return f"{r['rate']:.3f} [{r['low']:.3f},{r['high']:.3f}]"


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")
