"""The public surface: exactly what ``recsys.encoders.__all__`` names, importable without loading torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_cli_embed_and_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from recsys.cli.encoders import register
    from recsys.config import Settings, get_settings
    from recsys.store import Store
    from tests.encoders.fixtures import COLOURS, add_item, garment, tiny_open_clip_preset

    home = tmp_path / "home"
    settings = Settings(home=home)
    name = tiny_open_clip_preset(settings, tmp_path / "ckpt")
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_ENCODER__PRESET", name)
    monkeypatch.setenv("RECSYS_ENCODER__NUM_WORKERS", "0")
    monkeypatch.setenv("RECSYS_ENCODER__DEVICE", "cpu")
    get_settings.cache_clear()
    try:
        store = Store.open(get_settings())
        add_item(store, "a", "red shirt", media=[("image", garment(tmp_path / "a.jpg", COLOURS["red"]))])
        add_item(store, "b", "broken", media=[("image", tmp_path / "missing.jpg")])
        app = typer.Typer()
        register(app)
        result = CliRunner().invoke(app, ["embed", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output.strip().splitlines()[-1])
        assert report["items"] == 2 and report["broken_media"] == 1 and "b" in report["errors"]
        info = CliRunner().invoke(app, ["encoder", "info", "--json"])
        assert json.loads(info.output.strip().splitlines()[-1])["preset"] == name
    finally:
        get_settings.cache_clear()
