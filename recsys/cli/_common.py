"""Shared CLI plumbing: JSON output on the last stdout line, progress bars, opening the store."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

err = Console(stderr=True)


def emit_json(obj: Any) -> None:
    """The machine-readable result: one JSON document on the last line of stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def open_store() -> Any:
    from recsys.store import Store

    return Store.open()


@contextmanager
def progress_bar(description: str = "working") -> Iterator[Callable[..., None]]:
    """Yields ``update(stage, done, total=None)``; draws on stderr so stdout stays parseable."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal) as prog:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int | None = None) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(f"{description}: {stage}", total=total)
            prog.update(tasks[stage], completed=done, total=total)

        yield update
