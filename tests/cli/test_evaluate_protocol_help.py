"""`recsys evaluate --help` names every protocol the command accepts: it said "hm|movielens" only, while last_day,
last_interaction and auto are accepted too (the error message for an unknown one lists them)."""

from __future__ import annotations

import typer

from recsys.cli import _register_commands, app
from recsys.evaluation.splits import PROTOCOLS

if not any(c.name == "evaluate" for c in app.registered_commands):
    _register_commands()  # what `main()` does before running the app


def test_protocol_help_lists_every_accepted_value() -> None:
    evaluate = typer.main.get_command(app).commands["evaluate"]  # type: ignore[attr-defined]
    text = next(getattr(p, "help", "") or "" for p in evaluate.params if p.name == "protocol")
    for name in (*PROTOCOLS, "hm", "movielens", "auto"):
        assert name in text, (name, text)
    assert "default" in text
