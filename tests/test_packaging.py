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


def test_help_shows_flags_as_flags() -> None:
    """`--json` takes no value: typer 0.29 printed `--json <bool>` (and `--help <bool>`), and `--json true` fails."""
    from recsys.cli import app

    r = CliRunner().invoke(app, ["stats", "--help"])
    assert r.exit_code == 0 and "--json" in r.stdout and "<bool>" not in r.stdout, r.stdout


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


# the API (and its client) may use the `api` extra; everything else is what a lean install (`make demo`) has
EXTRA_ALLOWED = {"recsys/api": "api", "recsys/client": "api"}
VIA = {"starlette": "fastapi", "anyio": "fastapi"}
"""Packages a declared one guarantees (FastAPI is built on Starlette)."""


def test_module_level_imports_are_declared_dependencies() -> None:
    """A package imported at module level must be a core dependency (or the extra of that part): the lean demo
    install once failed on pandas, which only the dev tools had brought."""
    import ast
    import re
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}

    core = names(project["dependencies"])
    extras = {k: names(v) for k, v in project["optional-dependencies"].items()}
    dists = packages_distributions()
    stdlib = sys.stdlib_module_names
    missing = []
    for path in (ROOT / "recsys").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("recsys/_migrations"):
            continue
        allowed = set(core)
        for prefix, extra in EXTRA_ALLOWED.items():
            if rel.startswith(prefix):
                allowed |= extras[extra]
        for node in ast.parse(path.read_text()).body:  # module level only: lazy imports inside functions are fine
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for mod in mods:
                top = mod.split(".")[0]
                if top in stdlib or top in ("recsys", "__future__"):
                    continue
                dist = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                if not dist & allowed and not {VIA.get(d) for d in dist} & allowed:
                    missing.append(f"{rel}: {mod} ({', '.join(sorted(dist))})")
    assert not missing, "module-level imports of undeclared packages:\n" + "\n".join(missing)


# What a notebook starts from is importable from the package itself (the README's Quick start does), and loading
# the package alone pulls in none of the heavy dependencies (the CLI imports it first).
def test_the_top_level_names_load_on_first_use() -> None:
    code = ("import sys, recsys; assert not {'torch', 'faiss', 'pandas'} & set(sys.modules), 'heavy import'; "
            "from recsys import ItemFilter, ListRules, Recommender; "
            "from recsys.index.meta import ItemFilter as F; from recsys.serving.rules import ListRules as L; "
            "from recsys.service import Recommender as R; "
            "assert (Recommender, ItemFilter, ListRules) == (R, F, L); print(sorted(recsys.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['ItemFilter', 'ListRules', 'Recommender']"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        import recsys

        recsys.Nope  # noqa: B018
