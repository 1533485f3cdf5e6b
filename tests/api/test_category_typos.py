"""A rule naming a category the catalogue lacks acts on nothing: a variant's is warned about at start-up, and a
variant's or a request's is named in ``meta.unknown_items`` (as its ``category:NAME`` key), as item-id typos are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api import create_app
from recsys.config import ExperimentsSettings
from recsys.experiments.items import unknown_categories
from recsys.store import Store
from tests.api.conftest import CATALOGUE, api_settings
from tests.api.test_feedback import StoringCatalogue, StoringFake
from tests.api.test_feedback import storing as storing  # a fixture


class StoreCatalogue(StoringCatalogue):
    """The fake's catalogue with the store the service's own has (its categories are looked up there)."""

    @property
    def store(self) -> Store:
        return self.fake.store  # type: ignore[no-any-return]


def test_the_store_knows_live_categories_only(storing: StoringFake) -> None:
    keys = ["category:hats", "category:hatz", "category:shoes", "category:hats"]
    assert unknown_categories(StoreCatalogue(storing), keys) == ["category:hatz"]
    assert unknown_categories(StoreCatalogue(storing), ["category:Hats", "category: SHOES"]) == []  # any case
    assert unknown_categories(object(), keys) == []  # a catalogue that cannot say finds none missing


def test_category_typos_are_warned_at_start_and_named_in_meta(tmp_path: Path, storing: StoringFake,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    assert {it["category"] for it in CATALOGUE} == {"shoes", "hats"}
    storing.catalogue = StoreCatalogue(storing)
    s = api_settings(tmp_path)
    s.experiments = ExperimentsSettings(definitions=[{"name": "cats", "variants": [
        {"name": "control", "share": 0.5},
        {"name": "v", "share": 0.5, "boosts": {"category:hatz": 5.0, "h1": 1.0},
         "bury": ["category:shoez", "category:shoes"]}]}])
    with caplog.at_level("WARNING", logger="recsys.experiments"), \
            TestClient(create_app(s, storing), raise_server_exceptions=False) as c:
        warned = [r.getMessage() for r in caplog.records if "lacks" in r.getMessage()]
        assert len(warned) == 1 and "'cats'" in warned[0] and warned[0].endswith("category:hatz, category:shoez")
        exps: Any = c.app.state.experiments  # type: ignore[attr-defined]
        users = {exps.assign("recommendations", f"u{i}").variant.name: f"u{i}" for i in range(40)}
        meta = c.get(f"/v1/users/{users['v']}/recommendations?k=3").json()["meta"]
        assert meta["unknown_items"] == ["category:hatz", "category:shoez"]
        meta = c.get(f"/v1/users/{users['control']}/recommendations",
                     params={"k": 3, "bury": ["category:nope", "category:hats"], "boost": "category:hatz=1"}).json()
        assert meta["meta"]["unknown_items"] == ["category:hatz", "category:nope"]
        assert "unknown_items" not in c.get(f"/v1/users/{users['control']}/recommendations",
                                            params={"k": 3, "bury": "category:hats"}).json()["meta"]
