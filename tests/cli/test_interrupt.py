"""Ctrl-C in any command says ``interrupted`` on stderr and exits 130 (typer's own handling made it a silent 130
before ``main()`` could say it); a command that says more itself (``items describe``) says it once."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from recsys import cli


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the real ``recsys.cli.main()`` with ``args``; its exit status and stderr."""
    monkeypatch.setattr(sys, "argv", ["recsys", *args])
    if any(g.name == "items" and any(c.name == "describe" for c in g.typer_instance.registered_commands)
           for g in cli.app.registered_groups):  # registered once per process, as main() does
        monkeypatch.setattr(cli, "_register_commands", lambda: None)
    with pytest.raises(SystemExit) as ex:
        cli.main()
    return int(ex.value.code or 0), capsys.readouterr().err


def _interrupt(*_a: Any, **_kw: Any) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize("args", [("stats",), ("items", "hide", "x1"), ("db", "current")])
def test_ctrl_c_in_a_command_says_interrupted_and_exits_130(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              args: tuple[str, ...]) -> None:
    from recsys.cli import data

    monkeypatch.setattr(data, "open_store", _interrupt)
    code, err = _main(monkeypatch, capsys, *args)
    assert code == 130 and err.strip().splitlines() == ["interrupted"]


def test_a_command_saying_its_own_interrupted_line_says_it_once(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.cli import describe

    monkeypatch.setattr(describe, "open_store", _interrupt)
    code, err = _main(monkeypatch, capsys, "items", "describe")
    assert code == 130 and err.strip().splitlines() == ["interrupted; nothing written"]
