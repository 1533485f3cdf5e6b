"""``recsys recommend-batch OUT``: every user's list written to one file, offline (an e-mail campaign, a cache or CDN
push, a partner feed); :mod:`recsys.serving.batch` is the job and says the file's format."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.cli import _common
from recsys.cli._common import (
    BoostOpt,
    BuryOpt,
    DiversityOpt,
    ExplorationOpt,
    JsonOpt,
    NowOpt,
    PinOpt,
    emit_json,
    interrupted_status,
    parse_now,
    warn_unmatched_rules,
)
from recsys.cli.pipeline import ExplainOpt, FilterOpt, KOpt

NAME = "recommend-batch"


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _rate(done: int, total: int, since: tuple[float, int], now: float) -> str:
    """Users done, users/s and the time left, e.g. ``120/300, 40.1 users/s, ETA 4 s``; the rate is taken from
    ``since`` (the time and count of the first update), so loading the ranker does not count as ranking time."""
    elapsed, ranked = now - since[0], done - since[1]
    rate = ranked / elapsed if elapsed > 0 and ranked > 0 else 0.0
    speed, eta = (f"{rate:.1f} users/s", _span((total - done) / rate)) if rate > 0 else ("? users/s", "?")
    return f"{done}/{total}, {speed}, ETA {eta}"


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None]]:
    """Yields ``update(done, total)``. On a terminal a bar with users/s and the ETA on stderr; off one (a cron log) a
    plain line at once, then at most every ``PLAIN_EVERY_S`` and at the end, as ``recsys build`` prints its stages."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    err, start = _common.err, time.monotonic()
    plain = not err.is_terminal
    said, last, since = -1e18, "", (0.0, 0)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), console=err, transient=False, disable=plain) as bar:
        task = bar.add_task(f"{NAME}: users", total=None, rate="starting")
        if plain:
            err.print(f"{NAME}: starting", soft_wrap=True)

        def update(done: int, total: int) -> None:
            nonlocal said, last, since
            now = time.monotonic()
            since = since if since[1] else (now, done)
            rate = _rate(done, total, since, now)
            if not plain:
                bar.update(task, completed=done, total=total, rate=rate)
                return
            last = f"{NAME}: users {rate} ({now - start:.0f} s)"
            if done >= total or now - said >= _common.PLAIN_EVERY_S:
                err.print(last, soft_wrap=True)
                said, last = now, ""

        yield update
        if last:  # the last update came within PLAIN_EVERY_S of a printed one
            err.print(last, soft_wrap=True)


def recommend_batch(
    out: Annotated[Path, typer.Argument(help="the file to write, its format by its name: .jsonl (one object per "
                                             "user) or .csv (user_id,rank,item_id,score), either optionally .gz",
                                        show_default=False)],
    users: Annotated[Path | None, typer.Option("--users", help="a file of user ids, one a line (blank lines and # "
                                               "comments skipped); default: every stored user but those `recsys "
                                               "evaluate --test-events` replayed")] = None,
    k: KOpt = 20,
    explain: ExplainOpt = False,
    diversity: DiversityOpt = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="item id to leave out of every list "
                                                                        "(repeatable)")] = None,
    filters: FilterOpt = None,
    now: NowOpt = None,
    boost: BoostOpt = None,
    bury: BuryOpt = None,
    pin: PinOpt = None,
    exploration: ExplorationOpt = 0.0,
    force: Annotated[bool, typer.Option("--force", help="replace OUT if it exists")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write every user's recommendations to one file (jsonl or csv, optionally gzipped).

    Each list is what `recsys recommend USER` gives (same ranker, clock, rules, explanations). A user whose list
    fails is said on stderr and left out (exit 1); OUT appears only when the run ends: an interrupted run leaves no
    OUT and no temporary file."""
    from recsys.cli.pipeline import _as_served, _filters, _recommender
    from recsys.serving.batch import check_output, read_user_ids, write_lists
    from recsys.serving.rules import ListRules, parse_pairs

    when = parse_now(now)
    check_output(out, force=force, explain=explain)  # said before the progress starts
    ids = read_user_ids(users) if users is not None else None
    rules = ListRules.of(boosts=parse_pairs(boost or (), "--boost", float), bury=bury or (),
                         pins=parse_pairs(pin or (), "--pin", int), exploration=exploration)
    rec = _recommender()
    warn_unmatched_rules(rec, rules)  # once, before every user's list carries a rule that acts on nothing
    try:
        with _as_served(), _progress() as update:
            report = write_lists(rec, out, ids, k, force=force, filter=_filters(filters, rec), exclude=exclude or (),
                                 diversity=diversity, explain=explain, now=when, rules=rules, progress=update,
                                 on_failure=_failed)
    except KeyboardInterrupt as e:
        kept = "left as it was" if out.exists() else "not written"
        _common.err.print(f"interrupted; {out} {kept}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(interrupted_status(e)) from None
    _summary(report.to_dict(), json_out)
    if report.failed:
        raise typer.Exit(1)


def _failed(user_id: str, e: Any) -> None:
    _common.err.print(f"failed {user_id!r}: [{e.code}] {e.message}", markup=False, highlight=False, soft_wrap=True)


def _summary(r: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json(r)
        return
    unknown = f" ({r['unknown']} unknown: the trending list)" if r["unknown"] else ""
    typer.echo(f"{r['written']} list(s) written to {r['out']} ({r['format']}) for {r['users']} user(s){unknown}; "
               f"{r['failed']} failed; {r['seconds']:.1f} s, {r['users_per_s']:.1f} users/s; ranker {r['ranker']}, "
               f"index {r['index_generation']}, ranked at {r['ranked_at']}")


def register(root: typer.Typer) -> None:
    """Called by ``recsys.cli`` to add ``recsys recommend-batch``."""
    root.command(NAME)(recommend_batch)
