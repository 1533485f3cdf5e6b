"""What operators expect of a package: `recsys --version`, and a LICENSE file that is the licence pyproject names."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def test_version_flag() -> None:
    from recsys.cli import app

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"recsys {version('recsys')}"


def test_license_matches_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert (declared.get("text") if isinstance(declared, dict) else declared) == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


@pytest.mark.slow
def test_wheel_ships_the_migrations_and_migrates_a_new_store(tmp_path: Path) -> None:
    """An installed package (not a checkout) must create and migrate its database on first use."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True)
    wheel = next(wheels.glob("recsys-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "recsys/_migrations/env.py" in names
    assert "recsys/describe/vocabularies/hm.toml" in names
    assert {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")} <= {Path(n).name for n in names}
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import recsys, sys; from recsys.config import Settings; from recsys.store import Store; "
            f"assert recsys.__file__.startswith({str(site)!r}), recsys.__file__; "
            f"s = Store.open(Settings(home={str(tmp_path / 'home')!r})); print('ok')")
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("RECSYS_DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
    assert (tmp_path / "home" / "recsys.db").exists()
