"""`recsys build` is idempotent: on an unchanged store every stage skips itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.service import Recommender
from recsys.store import Store
from tests.e2e_fixture import built_demo, e2e_settings, private_home


@pytest.mark.slow
def test_second_build_skips_every_stage(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    home, _ = built_demo(tmp_path_factory)
    settings = e2e_settings(private_home(home, tmp_path / "home"))
    store = Store.open(settings)
    report = Recommender(settings, store).jobs.build()
    store.dispose()
    assert str(report["encoder_fit"]).startswith("skipped")
    assert report["embed"]["encoded"] == 0
    assert report["index"]["action"] == "skipped"
    assert str(report["train"]).startswith("skipped")
