"""`recsys feedback report` in text says what its JSON says: likes, add-to-carts, items served and unattributed
events too (its help promises them), and the ranker and index generation ids whole (pasted into `--to`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from recsys.config import Settings, get_settings
from recsys.store import Store

GEN = "20261207T132925093528Z-bbb5f6"


def _group(source: str, n: int, basis: str) -> dict[str, Any]:
    rate = {"rate": 0.1, "low": 0.04, "high": 0.2}
    return {"source": source, "ranker_version": "ranker-20261207-133022", "index_generation": GEN, "lists": 10 + n,
            "items_served": 50 + n, "impressions": 40 + n, "clicks": 5 + n, "likes": 7 + n, "add_to_cart": 3 + n,
            "purchases": 2 + n, "unattributed": 9 + n, "exposures": 40 + n, "exposure_basis": basis, "ctr": rate,
            "conversion_rate": rate}


def test_text_report_has_every_count_and_whole_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli import feedback

    data = {"since": None, "confidence": 0.95, "groups": [_group("recommend", 0, "impressions")],
            "totals": {k: v for k, v in _group("", 100, "mixed").items()
                       if k not in ("source", "ranker_version", "index_generation")}}
    monkeypatch.setattr("recsys.feedback.feedback_report", lambda store, since=None: data)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "h"))
    Store.open(Settings(home=tmp_path / "h")).dispose()
    get_settings.cache_clear()
    try:
        app = typer.Typer()
        feedback.register(app)
        res = CliRunner().invoke(app, ["feedback", "report"])
        assert res.exit_code == 0, res.output
        out = res.stdout
    finally:
        get_settings.cache_clear()
    assert f"index {GEN}" in out and "ranker ranker-20261207-133022" in out
    for n in (0, 100):  # the group, then the totals
        assert (f"lists {10 + n}, items served {50 + n}, impressions {40 + n}, clicks {5 + n}, likes {7 + n}, "
                f"add-to-carts {3 + n}, purchases {2 + n}, unattributed {9 + n}") in out
    assert "CTR 0.100 [0.040,0.200], conversion 0.100 [0.040,0.200] over 40 impressions" in out
    assert "total" in out and "95% Wilson" in out
