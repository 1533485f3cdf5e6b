"""`recsys shell`: one warm process for repeated queries (the index, the ranker and the encoder stay loaded).

Each line is a recsys command as on the command line, without the leading ``recsys``::

    recsys> recommend user-0001 --k 5
    recsys> search text "red summer dress"
    recsys> similar 0108775015 --json

A one-off ``recsys recommend`` starts a process and loads everything (10-20 s on a small machine); here the first
query pays that once and the next ones take milliseconds.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time

import typer

from recsys.cli._common import err


def shell() -> None:
    """Run recsys commands in one warm process (quit with `quit`, `exit` or Ctrl-D)."""
    from recsys.cli import app, pipeline
    from recsys.errors import RecsysError

    command = typer.main.get_command(app)
    pipeline.keep_warm(True)
    interactive = sys.stdin.isatty()
    failed = 0
    if interactive:
        with contextlib.suppress(ImportError):  # line editing and Up/Down recall in input() (not on Windows)
            import readline  # noqa: F401  (imported for its effect on input(); the history is this session's only)
        err.print("recsys shell: type a command as you would after `recsys` (help, quit); the first query loads "
                  "the index and the ranker, later ones reuse them")
    try:
        while True:
            try:
                line = input("recsys> " if interactive else "")
            except EOFError:
                break
            except KeyboardInterrupt:  # Ctrl-C clears the line, as in Python's own prompt; Ctrl-D quits
                err.print("")
                continue
            args = _words(line)
            if args is None:  # unreadable: said, and it counts as a failed command in a script
                failed += 1
                continue
            if not args:
                continue
            if args[0] in ("quit", "exit"):
                break
            if args[0] == "help":  # `help recommend` is `recommend --help`
                args = [*args[1:], "--help"]
            if args[0] in ("shell", "serve", "demo"):
                err.print(f"`{args[0]}` is not available inside the shell")
                continue
            t = time.perf_counter()
            try:
                command.main(args=args, prog_name="recsys", standalone_mode=False)
            except KeyboardInterrupt:  # stops this command only: what the shell loaded stays loaded
                err.print("interrupted")
                failed += 1
            except RecsysError as e:
                typer.echo(f"error [{e.code}]: {e.message}", err=True)
                failed += 1
            except SystemExit as e:
                failed += e.code not in (0, None)
            except Exception as e:  # click's own (usage errors, --help's exit), whichever click typer runs on
                if hasattr(e, "show"):
                    e.show()
                    failed += 1
                elif type(e).__name__ not in ("Exit", "Abort"):
                    raise
                elif getattr(e, "exit_code", 0):
                    failed += 1
            if interactive:
                err.print(f"({(time.perf_counter() - t) * 1000:.0f} ms)")
    finally:
        pipeline.keep_warm(False)
    if failed and not interactive:  # a script piped in fails as a whole when any of its commands did
        err.print(f"{failed} command(s) failed")
        raise typer.Exit(1)


def _words(line: str) -> list[str] | None:
    """The line's arguments, quoted as in a POSIX shell; a line starting with # is a comment (a # inside a query is
    kept: "size #8 shoes"). An unreadable line (an apostrophe left open) is reported and skipped (None), not fatal."""
    if line.lstrip().startswith("#"):
        return []
    try:
        return shlex.split(line)
    except ValueError as e:
        err.print(f"cannot read that line ({e}): put a query with an apostrophe in double quotes, e.g. "
                  "search text \"women's dress\"", markup=False)
        return None


def register(app: typer.Typer) -> None:
    app.command("shell")(shell)
