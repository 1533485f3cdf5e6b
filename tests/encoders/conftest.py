from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.store import Store


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
