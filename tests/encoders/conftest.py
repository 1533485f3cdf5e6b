from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.store import Store
from tests.encoders.fixtures import tiny_open_clip_preset


@pytest.fixture
def enc_settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 't.db'}")
    s.encoder.batch_size = 8
    s.encoder.num_workers = 0
    s.encoder.device = "cpu"
    return s


@pytest.fixture
def store(enc_settings: Settings) -> Store:
    st = Store(enc_settings.db_url)
    st.upgrade()
    return st


@pytest.fixture
def tiny(enc_settings: Settings, tmp_path: Path) -> Settings:
    """``enc_settings`` with a tiny open_clip preset (random weights, a checkpoint of its own): real towers, fast."""
    enc_settings.encoder.preset = tiny_open_clip_preset(enc_settings, tmp_path / "ckpt")
    return enc_settings
