"""One small demo, imported and built once per test session, shared by the notebook and the browser tests.

The build (encoder fit, embedding, index, ranker) takes a minute or more on a small CPU, so the fixtures in
``tests/notebooks`` and ``tests/browser`` both call :func:`built_demo`, which builds on first use and then returns
the same directory. Tests that write (likes, notebooks) work on a :func:`private_home` copy.
Set ``RECSYS_E2E_HOME`` to a directory built with the same demo to skip the build while iterating.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from recsys.config import Settings

E2E_ITEMS, E2E_USERS, E2E_SEED = 150, 30, 0
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

_built: dict[str, tuple[Path, Path]] = {}


def e2e_settings(home: Path) -> Settings:
    """Settings for the demo home: auth off (the loopback demo default), no rate limit."""
    s = Settings(home=home)
    s.api = s.api.model_copy(update={"auth": False, "rate_limit_per_minute": 0, "refresh_seconds": 0.5})
    return s


def built_demo(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(home, demo data directory) of the built e2e demo, built on the first call of the session."""
    if "demo" in _built:
        return _built["demo"]
    reuse = os.environ.get("RECSYS_E2E_HOME")
    if reuse and (Path(reuse) / "home").is_dir():
        _built["demo"] = (Path(reuse) / "home", Path(reuse) / "demo")
        return _built["demo"]
    from recsys.demo import generate_demo
    from recsys.service import Recommender
    from recsys.store import Store
    from recsys.store.importers import run_import

    root = factory.mktemp("e2e-demo")
    demo = root / "demo"
    generate_demo(demo, n_items=E2E_ITEMS, n_users=E2E_USERS, seed=E2E_SEED)
    settings = e2e_settings(root / "home")
    store = Store.open(settings)
    try:
        for kind in ("items", "users", "events"):
            run_import(store, kind, demo / f"{kind}.jsonl", settings=settings)
        Recommender(settings, store).jobs.build()
    finally:
        store.dispose()
    _built["demo"] = (settings.home, demo)
    return _built["demo"]


def private_home(home: Path, dst: Path) -> Path:
    """A writable copy of a built home (SQLite file, encoder heads, index and ranker generations)."""
    shutil.copytree(home, dst, symlinks=True)
    return dst
