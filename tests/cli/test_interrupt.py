"""Ctrl-C in any command says ``interrupted`` on stderr and exits 130 (typer's own handling made it a silent 130
before ``main()`` could say it); a command that says more itself (``items describe``) says it once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import run_main


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return run_main(monkeypatch, capsys, *args)


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
    assert code == 130 and err.strip().splitlines() == ["describe: starting", "interrupted; nothing written"]


def test_sigterm_in_a_command_is_handled_as_ctrl_c_and_exits_143(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # `kill` (a scheduler stopping a job) ended a command on the spot: no "interrupted", no clean-up of its writes
    import os
    import signal

    from recsys.cli import data

    def terminate(*_a: Any, **_kw: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**6):  # the handler runs between two bytecodes of the main thread
            pass
        raise AssertionError("SIGTERM was not handled")

    def not_main(*_a: Any) -> None:  # without main()'s handler the default action would end the test run
        raise AssertionError("SIGTERM reached the handler main() should have replaced")

    before = signal.signal(signal.SIGTERM, not_main)
    try:
        monkeypatch.setattr(data, "open_store", terminate)
        code, err = _main(monkeypatch, capsys, "stats")
        assert code == 143 and err.strip().splitlines() == ["interrupted"]
        assert signal.getsignal(signal.SIGTERM) is not_main  # main() puts the process's handler back
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize(("raised", "code"), [(KeyboardInterrupt, 130), ("terminated", 143)])
def test_an_interrupted_import_says_nothing_was_imported(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], tmp_path: Any,
                                                         raised: Any, code: int) -> None:
    # an import is one transaction, rolled back on Ctrl-C or SIGTERM: "interrupted" alone left a user guessing
    # whether part of the file was kept
    import recsys.store.importers as importers
    from recsys.cli import Terminated, data

    def stop(*_a: Any, **_kw: Any) -> Any:
        raise Terminated if raised == "terminated" else raised

    monkeypatch.setattr(data, "open_store", lambda **_kw: None)
    monkeypatch.setattr(importers, "run_import", stop)
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\na,b\n")
    got, err = _main(monkeypatch, capsys, "import", "items", str(f))
    lines = err.strip().splitlines()
    assert got == code and lines[-1] == "interrupted; nothing was imported (an import is one transaction): run it again"
    assert lines.count("interrupted") == 0
