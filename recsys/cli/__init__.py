"""The ``recsys`` command line: thin wrappers over the package. Heavy imports live inside the commands."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from recsys.cli import data, demo
from recsys.cli._common import Terminated, interrupted_status


class _Commands(TyperGroup):
    """The root command group. Ctrl-C in any command says ``interrupted`` and exits 130: typer's own handling turns
    a KeyboardInterrupt into a silent exit 130 before :func:`main` could say it. A command that says more itself
    (``items describe``: what was written) catches it first and exits 130 without reaching here."""

    def invoke(self, ctx: Any) -> Any:  # typer runs on a click of its own, whose Context type is private
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            typer.echo("interrupted", err=True)
            raise typer.Exit(interrupted_status(e)) from None


def _terminated(_signum: int, _frame: Any) -> None:
    raise Terminated


app = typer.Typer(
    cls=_Commands,
    help="recsys: multimodal recommendation engine (import, embed, index, train, evaluate, serve).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"recsys {version('recsys')}")
        except PackageNotFoundError:  # a source tree that was not installed
            typer.echo("recsys (not installed)")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """recsys: multimodal recommendation engine (import, embed, index, train, evaluate, serve)."""


app.command("config")(data.config)
app.command("stats")(data.stats)
app.add_typer(data.db_app, name="db")
app.add_typer(data.import_app, name="import")
app.add_typer(data.items_app, name="items")
app.command("demo")(demo.demo)


def _register_commands() -> None:
    """Command groups of the later pipeline stages, each in its own module."""
    import importlib

    for module in _COMMANDS:
        importlib.import_module(f"recsys.cli.{module}").register(app)
    _one_line_summaries(app)


def _one_line_summaries(group: typer.Typer) -> None:
    """Each command's row in its group's --help: the docstring's first paragraph as one line. Typer's table kept
    the source's line breaks inside its own wrapping, leaving rows that held one word ("sure", "`recsys")."""
    import inspect

    for info in group.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        if info.short_help is None and doc:
            info.short_help = " ".join(doc.split("\n\n")[0].split())
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _one_line_summaries(sub.typer_instance)


_COMMANDS = ("pipeline", "encoders", "index", "ranker", "serve", "feedback", "experiments", "describe", "shell",
             "prune", "backup", "batch")


def main() -> None:
    from recsys.config_checks import log_level
    from recsys.errors import RecsysError

    before = signal.signal(signal.SIGTERM, _terminated)  # `recsys serve`: uvicorn installs its own while it runs
    try:  # a bad RECSYS_LOG_LEVEL is a config error like any other, not logging's traceback
        logging.basicConfig(level=log_level(os.environ, "WARNING"),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        _register_commands()
        app()
    except RecsysError as e:
        typer.echo(f"error [{e.code}]: {e.message}", err=True)
        sys.exit(2)
    except Exception as e:
        message = settings_problem(e)
        if message is None:
            raise
        typer.echo(f"error [config]: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as e:  # before a command ran (loading the commands); a command's own is _Commands's
        typer.echo("interrupted", err=True)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    finally:
        signal.signal(signal.SIGTERM, before)


def settings_problem(e: BaseException) -> str | None:
    """A bad ``RECSYS_*`` value, said with the variable's name (pydantic's own report is a page of traceback that
    names a field path); None for any other error."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from recsys.config import without_password

    if isinstance(e, SettingsError):
        return f"{e}; a RECSYS_* variable holding JSON (e.g. RECSYS_RANKING__PARAMS) is not valid JSON"
    if not isinstance(e, ValidationError) or e.title != "Settings":
        return None
    parts = []
    for err in e.errors(include_url=False)[:5]:
        loc = [str(p) for p in err.get("loc", ())]
        name = "RECSYS_" + "__".join(p.upper() for p in loc[:2]) if loc else "a RECSYS_* variable"
        value = err.get("input")
        shown = without_password(value) if isinstance(value, str) else value  # a URL's password is not echoed
        got = f" (got {shown!r})" if "input" in err and not isinstance(value, dict) else ""
        parts.append(f"{name}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts) + ("; fix or unset the variable (`recsys config` prints every setting with its value "
                               "once the environment is valid)")
