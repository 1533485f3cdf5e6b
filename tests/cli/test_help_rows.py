"""Every command's row in its group's --help is one paragraph, wrapped by the terminal, not by the source."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner


def _commands(c: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, c)]
    for name, sub in (getattr(c, "commands", None) or {}).items():
        out += _commands(sub, (*path, name))
    return out


def test_no_command_row_keeps_the_docstrings_line_breaks() -> None:
    # `recsys items --help` at 120 columns showed rows holding "sure" or "`recsys" alone
    from recsys import cli

    cli._register_commands()
    broken = [" ".join(p) for p, c in _commands(typer.main.get_command(cli.app))
              if p and "\n" in (c.short_help or (c.help or "").split("\n\n")[0]).strip()]
    assert broken == []
    out = CliRunner().invoke(cli.app, ["items", "--help"], env={"COLUMNS": "120"}).stdout
    rows = [line.strip("│ ") for line in out.splitlines() if line.startswith("│")]
    assert "sure any more). Searchable at once; used for the text vector of items whose own text is poor at the next" \
        in rows, rows
