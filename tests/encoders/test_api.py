"""The public surface: exactly what ``recsys.encoders.__all__`` names, importable without loading torch."""

from __future__ import annotations

import subprocess
import sys

import recsys.encoders as encoders


def test_all_names_resolve() -> None:
    for name in encoders.__all__:
        assert getattr(encoders, name) is not None


def test_import_is_light() -> None:
    code = "import sys, recsys.encoders; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_cli_encoder_list() -> None:
    import typer
    from typer.testing import CliRunner

    from recsys.cli.encoders import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["encoder", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert "recsys-lite" in result.output.splitlines()[-1]
