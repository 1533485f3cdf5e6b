"""`recsys recommend --buy-again` takes only what the API's buy-again route takes: --explain printed nothing (the API
answers it with a 422), and the list options were dropped without a word."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli import _register_commands, app

if not any(c.name == "recommend" for c in app.registered_commands):
    _register_commands()  # what `main()` does before running the app


@pytest.mark.parametrize("extra", [["--explain"], ["--filter", "category=hat"], ["--diversity", "0.5"],
                                   ["--exclude", "item-1"], ["--pin", "item-1=1"], ["--exploration", "0.2"]])
def test_buy_again_refuses_list_options(extra: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))  # refused before anything is opened
    res = CliRunner().invoke(app, ["recommend", "user-1", "--buy-again", *extra])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.replace("│", " ").split())  # the error box wraps lines
    assert "--buy-again lists the user's own items" in said and "takes --k, --now and --json only" in said, said
