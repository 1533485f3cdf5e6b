"""Notebook fixtures: the shared e2e demo (built once per session, see tests/e2e_fixture.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_fixture import built_demo


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_demo(tmp_path_factory)[0]
