"""``recsys experiments``: the configured experiments and their reports (defined in settings, not here)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recsys.cli._common import JsonOpt, emit_json, open_store

experiments_app = typer.Typer(help="A/B experiments: variants from the settings (experiments.definitions or "
                                   "experiments.file), users assigned by salted hash.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="the experiment's name (see `recsys experiments list`)",
                                        show_default=False)]


def _experiments() -> Any:
    from recsys.config import get_settings
    from recsys.experiments import load_experiments

    return load_experiments(get_settings())


@experiments_app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """The configured experiments: active or not, surfaces, control and variant shares."""
    exps = [e.public() for e in _experiments().all]
    if json_out:
        emit_json({"experiments": exps})
        return
    if not exps:
        typer.echo("no experiments configured (set RECSYS_EXPERIMENTS__DEFINITIONS or RECSYS_EXPERIMENTS__FILE)")
    for e in exps:
        shares = ", ".join(f"{v['name']} {v['share']:.0%}" for v in e["variants"])
        typer.echo(f"{e['name']:<24} {'active' if e['active'] else 'stopped':<8} {','.join(e['surfaces']):<24} "
                   f"{shares}")


@experiments_app.command("show")
def show(name: NameArg, json_out: JsonOpt = False) -> None:
    """One experiment's definition: each variant's share and what it changes."""
    e = _experiments().get(name).public()
    if json_out:
        emit_json(e)
        return
    typer.echo(f"{e['name']} ({'active' if e['active'] else 'stopped'}; surfaces {', '.join(e['surfaces'])}; "
               f"control {e['control']})")
    if e["description"]:
        typer.echo(e["description"])
    for v in e["variants"]:
        changes = ", ".join(f"{k}={val}" for k, val in v["changes"].items()) or "as configured"
        typer.echo(f"  {v['name']:<20} {v['share']:>6.1%}  {changes}")


@experiments_app.command("report")
def report(name: NameArg, since: Annotated[str | None, typer.Option(
               "--since", help="only lists served from this time (ISO 8601, naive = UTC; or unix seconds); default: "
                               "the definition's started_at, the start of its current run")] = None,
           json_out: JsonOpt = False) -> None:
    """Per variant: users, lists, impressions, clicks, conversions, CTR and conversion rate (95% Wilson
    intervals), and the difference to the control with its p-value (z-test, variance clustered by user)."""
    from recsys.experiments import experiment_report
    from recsys.feedback.report import parse_since

    exp = _experiments().get(name)
    data = experiment_report(open_store(), exp, since=parse_since(since) if since else None)
    if json_out:
        emit_json(data)
        return
    typer.echo(f"{data['experiment']}: lists served since {data['since'] or 'the first'}; rates over "
               f"{data['exposure_basis']}; {data['test']}")
    typer.echo(f"{'variant':<16} {'users':>6} {'lists':>7} {'exposed':>8} {'clicks':>7} {'conv':>6} "
               f"{'CTR':>22} {'vs control':>12} {'p':>8}")
    for v in data["variants"]:
        cmp = (v.get("vs_control") or {}).get("ctr") or {}
        diff = "control" if v["control"] else _num(cmp.get("relative"), "{:+.1%}")
        typer.echo(f"{v['name'][:16]:<16} {v['users']:>6} {v['lists']:>7} {v['exposures']:>8} {v['clicks']:>7} "
                   f"{v['conversions']:>6} {_rate(v['ctr']):>22} {diff:>12} {_num(cmp.get('p_value'), '{:.2g}'):>8}")
    srm = data["sample_ratio"]
    split = "/".join(str(n) for n in srm["users"].values())
    if srm["p_value"] is None:
        typer.echo(f"users per variant {split}: {srm['note']}")
    else:
        expected = "/".join(f"{e:g}" for e in srm["expected"].values())
        typer.echo(f"users per variant {split} against expected {expected}: p = {srm['p_value']:.2g}")
        if srm["mismatch"]:
            typer.echo(f"SAMPLE RATIO MISMATCH: {srm['note']}")
    capped = {k: sum(v["left_out"][k] for v in data["variants"]) for k in ("clicks", "conversions")}
    if any(capped.values()):
        typer.echo(f"left out of the rates: {capped['clicks']} clicks and {capped['conversions']} conversions beyond "
                   "their user's exposures (clicks without impressions)")


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _rate(r: dict[str, float | None]) -> str:
    if r["rate"] is None:
        return "-"
    return f"{r['rate']:.4f} [{r['low']:.4f},{r['high']:.4f}]"


def register(app: typer.Typer) -> None:
    app.add_typer(experiments_app, name="experiments")
