"""Shared CLI plumbing: JSON output on the last stdout line, progress bars, opening the store."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

err = Console(stderr=True, soft_wrap=True)  # piped, a long line stays one line (not cut at 80 columns)

# options most commands share, with one help text each (an option without help is a blank in `--help`)
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON on the last line of stdout")]
ItemIdArg = Annotated[str, typer.Argument(help="an item id, as imported (e.g. item-00001)", show_default=False)]
ItemIdsArg = Annotated[list[str], typer.Argument(help="one or more item ids, as imported", show_default=False)]
MapOpt = Annotated[list[str] | None, typer.Option("--map", help="CANONICAL=COLUMN: read a field from a column of "
                                                                "another name, e.g. item_id=sku (repeatable)")]
DelimiterOpt = Annotated[str, typer.Option("--delimiter", help="a CSV file's delimiter, one character, e.g. ';' (as "
                                                             "Excel saves CSV in much of Europe) or '|'")]
EventTypeOpt = Annotated[str | None, typer.Option("--type", help="type for rows without one")]

DiversityOpt = Annotated[float | None, typer.Option(min=0.0, max=1.0, help="MMR weight")]
NowOpt = Annotated[str | None, typer.Option(help="rank as of this time: ISO 8601 (naive = UTC) or unix seconds "
                                                 "(default: ranking.clock)")]
BoostOpt = Annotated[list[str] | None, typer.Option("--boost", help="KEY=B: boost an item id or category:NAME by B "
                                                                   "score spreads (repeatable)")]
BuryOpt = Annotated[list[str] | None, typer.Option("--bury", help="item id or category:NAME to put below the rest "
                                                                 "(repeatable)")]
PinOpt = Annotated[list[str] | None, typer.Option("--pin", help="ITEM=POSITION: the item at that 1-based position "
                                                               "(repeatable)")]
ExplorationOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="share of new and long-tail items sampled "
                                                                     "into the list")]
"""The list options `recsys recommend` and `recsys recommend-batch` share."""


def parse_now(now: str | None) -> datetime | None:
    """``--now`` as naive UTC, read as event timestamps and ``--since`` are: ISO 8601 (naive = UTC) or unix seconds,
    within 1970..2200 in UTC; milliseconds refused, never read as another time. A time to come is fine (replays)."""
    from recsys.store.importers.records import datetime_of, out_of_range

    send = "send ISO 8601 (e.g. 2020-09-01T00:00) or unix seconds"
    if now is None:
        return None
    if not now.strip():  # as an empty --since: an unset $NOW must not fall back to the clock
        raise typer.BadParameter(f"--now is empty; {send}, or leave it out to rank on ranking.clock")
    try:
        when = datetime_of(now)
        if not 1970 <= when.year <= 2200:
            raise out_of_range(now, when)
    except ValueError as e:
        raise typer.BadParameter(f"--now: {str(e).removesuffix(' (use ISO 8601 or unix seconds)')}; {send}") from None
    return when


def parse_map(mapping: list[str] | None) -> dict[str, str]:
    """``--map CANONICAL=COLUMN`` options as a dict (the importer's column mapping)."""
    from recsys.errors import ImportFailed

    pairs: dict[str, str] = {}
    for m in mapping or []:
        if "=" not in m:
            raise ImportFailed(f"--map expects canonical=column, got {m!r}")
        k, v = m.split("=", 1)
        pairs[k.strip()] = v.strip()
    return pairs


def emit_json(obj: Any) -> None:
    """The machine-readable result: one JSON document on the last line of stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def open_store(*, create: bool = False, upgrade: bool = True) -> Any:
    """The store of the settings; without ``create``, a default SQLite store that does not exist yet is a
    ConfigError: a command run from the wrong directory must not make (and report on) an empty store there.
    Without ``upgrade`` its schema is left as found (``db current`` reports it, never moves it)."""
    from recsys.config import get_settings
    from recsys.errors import ConfigError
    from recsys.store import Store

    settings = get_settings()
    if not create and not settings.database_url and not (settings.home / "recsys.db").exists():
        raise ConfigError(f"no recsys store at {settings.home.resolve()}: run the commands from the directory you "
                          "built in, set RECSYS_HOME to it, or make one (`make demo`, `recsys import ...`, or "
                          "`recsys db upgrade` for an empty one)")
    return Store.open(settings, upgrade=upgrade)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a job scheduler's stop): handled as Ctrl-C is, so a command cleans up what it was writing and
    says ``interrupted`` (the default action ended the process on the spot, saying nothing); exit status 143."""


def interrupted_status(e: KeyboardInterrupt) -> int:
    """The exit status of an interrupted command: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(e, Terminated) else 130


PLAIN_EVERY_S = 20.0
"""Without a terminal (output to a file or a CI log), a progress line per stage at most this often."""


class _Alive:
    """Off a terminal, a line every :data:`PLAIN_EVERY_S` in which nothing else was printed (a stage's first batch, or
    an epoch, can take minutes): where the job stands, "still at work", and the elapsed time."""

    def __init__(self, description: str, start: float) -> None:
        self.where, self.start, self.last = f"{description}: starting", start, time.monotonic()
        self.stop = threading.Event()

    def at(self, where: str) -> None:
        self.where = where

    def said(self) -> None:
        self.last = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(max(0.01, self.last + PLAIN_EVERY_S - time.monotonic())):
            if time.monotonic() - self.last >= PLAIN_EVERY_S:
                self.said()
                err.print(f"{self.where} (still at work, {self.last - self.start:.0f} s)", soft_wrap=True)


@contextmanager
def _keep_alive(description: str, start: float, plain: bool) -> Iterator[_Alive]:
    alive = _Alive(description, start)
    thread = threading.Thread(target=alive.run, name="recsys-progress", daemon=True) if plain else None
    if thread is not None:
        thread.start()
    try:
        yield alive
    finally:
        alive.stop.set()
        if thread is not None:
            thread.join()


@contextmanager
def progress_bar(description: str = "working") -> Iterator[Callable[..., None]]:
    """Yields ``update(stage, done, total=None)`` (or ``update(done, total)`` for a single-stage job); draws on
    stderr so stdout stays parseable. Off a terminal it prints plain lines with the elapsed time instead, so a long
    step piped to a file still shows it is alive."""
    start = time.monotonic()
    plain = not err.is_terminal
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False, disable=plain) as prog, \
            _keep_alive(description, start, plain) as alive:
        tasks: dict[str, Any] = {}
        said: dict[str, float] = {}
        unsaid: dict[str, str] = {}  # per stage, its last line if not printed: said at the end (counts with no total)
        # said at once: a job's first stage can be seconds away (loading torch and the encoder, reading the store)
        if plain:
            err.print(f"{description}: starting", soft_wrap=True)
        starting = None if plain else prog.add_task(f"{description}: starting", total=None)

        def update(stage: str | int, done: int | None = None, total: int | None = None) -> None:
            if not isinstance(stage, str):  # update(done, total): one unnamed stage
                stage, done, total = "progress", int(stage), done
            done = int(done or 0)
            if plain:
                now = time.monotonic()
                finished = total is not None and done >= total
                of = f"/{total}" if total is not None else ""
                line = f"{description}: {stage} {done}{of} ({now - start:.0f} s)"
                if said.get(stage) == 1e18:
                    return  # finished and said
                alive.at(f"{description}: {stage} {done}{of}")
                if finished or now - said.get(stage, -1e9) >= PLAIN_EVERY_S:
                    said[stage] = now if not finished else 1e18
                    unsaid.pop(stage, None)
                    alive.said()
                    err.print(line, soft_wrap=True)
                else:
                    unsaid[stage] = line
                return
            if stage not in tasks:
                if starting is not None and not tasks:
                    prog.remove_task(starting)
                tasks[stage] = prog.add_task(f"{description}: {stage}", total=total)
            prog.update(tasks[stage], completed=done, total=total)

        yield update
        if starting is not None and not tasks:
            prog.remove_task(starting)
        for line in unsaid.values():
            err.print(line, soft_wrap=True)


def warn_unmatched_rules(rec: Any, rules: Any) -> None:
    """A typo'd item id or category in ``--boost``/``--bury``/``--pin`` acts on nothing: say so on stderr, as the
    API's ``meta.unknown_items`` does."""
    from functools import partial

    from recsys.experiments.items import unknown_categories, unknown_keys

    named = [*(i for i, _ in rules.boosts), *rules.bury, *(i for i, _ in rules.pins)]
    unknown = unknown_keys(named, rec.catalogue.unknown_items, partial(unknown_categories, rec.catalogue)) if named \
        else []
    if unknown:
        err.print(f"no item or category matches {', '.join(map(repr, unknown))}: those rules act on nothing",
                  style="yellow", soft_wrap=True)
