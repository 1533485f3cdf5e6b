"""`recsys ... --help` is the newcomer's manual: every command and option says what it is for, in full."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

from recsys.cli import _register_commands, app

if not any(c.name == "evaluate" for c in app.registered_commands):
    _register_commands()  # what `main()` does before running the app



def commands(cmd: Any = None, path: str = "recsys") -> Iterator[tuple[str, click.Command]]:
    cmd = typer.main.get_command(app) if cmd is None else cmd
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from commands(sub, f"{path} {name}")


def test_every_command_argument_and_option_has_a_help_text() -> None:
    # 56 had none (--k, --explain, --json in 30 commands, positional ids), and `db current`, `items unhide` showed
    # a blank line in their group's listing
    blank = [(path, "(command)") for path, cmd in commands() if not (cmd.help or "").strip()]
    blank += [(path, p.name or "") for path, cmd in commands() for p in cmd.params
              if p.name != "help" and not (getattr(p, "help", None) or "").strip()]
    assert not blank, blank


def test_help_texts_survive_rich_markup() -> None:
    """Typer renders help as rich markup: a "[labels]" in a help text was taken for a style and dropped."""
    mangled = [(path, text) for path, cmd in commands()
               for text in [cmd.help or "", *(getattr(p, "help", None) or "" for p in cmd.params)]
               if Text.from_markup(text).plain != text]
    assert not mangled


def test_items_tag_help_shows_the_vocabulary_format() -> None:
    out = CliRunner().invoke(app, ["items", "tag", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).output
    line = next(x for x in out.splitlines() if "--vocabulary" in x)
    assert "labels" in line and "{facet: }" not in line, line


def _option(path: str, name: str) -> click.Parameter:
    return next(p for p in dict(commands())[path].params if p.name == name)


@pytest.mark.parametrize("path", ["recsys recommend", "recsys similar", "recsys search text", "recsys evaluate"])
def test_shared_options_say_what_they_do(path: str) -> None:
    assert "results" in (getattr(_option(path, "k"), "help", "") or "") or path == "recsys evaluate"
    assert "JSON" in (getattr(_option(path, "json_out"), "help", "") or "")


def test_the_two_meanings_of_format_are_told_apart() -> None:
    """--format is a file format for `import`, a dataset for `evaluate --test-events` (names kept: scripts use them)."""
    imported = getattr(_option("recsys import items", "fmt"), "help", "") or ""
    evaluated = getattr(_option("recsys evaluate", "fmt"), "help", "") or ""
    assert "file format" in imported and "csv" in imported and "dataset" not in imported.split("(")[0]
    assert "dataset" in evaluated and "hm|movielens" in evaluated and "not a file format" in evaluated
    assert _option("recsys evaluate", "fmt").opts == ["--format"]  # DESIGN.md's contract: the name stays
