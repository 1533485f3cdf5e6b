"""`recsys encoder info` is a query: without a store it is refused in one line and makes nothing (it used to report
"fitted: False" and export ~100 MB of ONNX towers into the mistyped home); with one it reads the heads' manifest,
loads no model, writes nothing, and prints the metrics one per line. `encoder list` says "needs network once" once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.config import Settings, get_settings
from recsys.store import Store
from tests.conftest import run_main

METRICS = {"train_seconds": 3.92, "steps": 15.0, "final_loss": 4.563714504241943, "image_to_text_recall@10": 0.6975}


def _no_model(*args: object, **kwargs: object) -> None:
    raise AssertionError("encoder info loaded a model")


def test_no_store_is_refused_and_nothing_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "not-a-store"
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setattr("recsys.encoders.encoder.load_towers", _no_model)
    code, err = run_main(monkeypatch, capsys, "encoder", "info")
    assert code == 2 and not home.exists()
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error [config]: no recsys store at {home}")


def test_info_reads_the_manifest_writes_nothing_and_lists_metrics(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from recsys.cli.encoders import encoder_app

    home = tmp_path / "home"
    Store.open(Settings(home=home)).dispose()
    heads = home / "encoders" / "recsys-lite"
    (heads / "v1").mkdir(parents=True)
    (heads / "v1" / "manifest.json").write_text(json.dumps({"version": "v1", "dim": 128, "metrics": METRICS,
                                                            "recall_note": ""}))
    (heads / "CURRENT").write_text("v1")
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_ENCODER__RUNTIME", "onnx")
    monkeypatch.setenv("RECSYS_ENCODER__DEVICE", "cpu")
    monkeypatch.setattr("recsys.encoders.encoder.load_towers", _no_model)
    monkeypatch.setattr("recsys.encoders.onnx_runtime.onnxruntime_problem", lambda: None)
    get_settings.cache_clear()
    try:
        before = sorted(p.relative_to(home) for p in home.rglob("*"))
        res = CliRunner().invoke(encoder_app, ["info"])
        assert res.exit_code == 0, res.output
        assert sorted(p.relative_to(home) for p in home.rglob("*")) == before  # no onnx/, nothing else either
        out = res.stdout
        assert "{" not in out and "metrics:\n" in out
        assert "  final_loss                 4.5637\n" in out and "  steps                      15\n" in out
        assert "encoder_id: recsys-lite@v1\n" in out and "dim: 128\n" in out and "fitted: True\n" in out
        assert "onnx_exported: no" in out
        res = CliRunner().invoke(encoder_app, ["info", "--json"])
        info = json.loads(res.stdout.strip().splitlines()[-1])
        assert info["metrics"] == METRICS and info["runtime"] == "onnx" and info["onnx_exported"] is False
        assert not (home / "onnx").exists()
    finally:
        get_settings.cache_clear()


def test_list_says_needs_network_once_per_hub_row(home: Path) -> None:
    from typer.testing import CliRunner

    from recsys.cli.encoders import encoder_app

    out = CliRunner().invoke(encoder_app, ["list"]).stdout
    hub = [row for row in out.splitlines() if "ViT-B-32-laion" in row]
    assert len(hub) == 1 and hub[0].count("needs network once") == 1


# Heads fitted for other towers than the configured ones (another runtime, a checkpoint replaced) are what every
# query then refuses: `encoder info`, run to diagnose just that, says so and exits 1, without loading a model.
@pytest.mark.parametrize("json_out", [False, True])
def test_heads_fitted_for_other_towers_are_said_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         json_out: bool) -> None:
    from typer.testing import CliRunner

    from recsys.cli.encoders import encoder_app
    from recsys.encoders.encoder import configured_towers_id
    from recsys.encoders.registry import get_preset

    home = tmp_path / "home"
    Store.open(Settings(home=home)).dispose()
    heads = home / "encoders" / "recsys-lite"
    (heads / "v1").mkdir(parents=True)
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_ENCODER__DEVICE", "cpu")
    monkeypatch.setattr("recsys.encoders.encoder.load_towers", _no_model)
    get_settings.cache_clear()
    try:
        s = get_settings()
        towers = configured_towers_id(s, get_preset(s.encoder.preset, s))
        assert towers is not None
        (heads / "CURRENT").write_text("v1")
        for fitted_for, code in ((towers, 0), (towers + "+int8-text-elsewhere", 1)):
            (heads / "v1" / "manifest.json").write_text(json.dumps({"version": "v1", "dim": 128, "metrics": METRICS,
                                                                    "towers": fitted_for}))
            res = CliRunner().invoke(encoder_app, ["info", *(["--json"] if json_out else [])])
            assert res.exit_code == code, res.output
            said = f"fitted for towers {fitted_for}, not the configured {towers}"
            assert (said in res.stderr) == bool(code)
            if json_out:
                assert (said in (json.loads(res.stdout.strip().splitlines()[-1]).get("problem") or "")) == bool(code)
    finally:
        get_settings.cache_clear()
