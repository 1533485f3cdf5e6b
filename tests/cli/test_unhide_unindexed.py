"""Hidden items stay in the index, so unhiding acts at once; an item a release before 2026-12-06 left out of the
index while hidden is not there to come back: `recsys items unhide` says so and names the build that adds it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import get_settings
from recsys.index import build_generation, index_root
from recsys.store import Item, Store
from tests.index.fixtures import clustered, ids


def test_unhiding_an_item_the_served_index_lacks_says_to_build(home: Path) -> None:
    store = Store.open(get_settings())
    with store.session() as s:
        s.add_all(Item(external_id=i, content_hash="h", hidden=i in ("i00000", "i00001")) for i in ids(40))
    store.dispose()
    # the old release's index: the hidden i00000 left out, the hidden i00001 kept (as now)
    build_generation(index_root(get_settings()), ids(40)[1:], {"fused": clustered(39)}, encoder_id="e")
    runner = CliRunner()
    both = runner.invoke(app, ["items", "unhide", "i00000", "i00001"])
    assert both.exit_code == 0 and "2 item(s) updated" in both.stdout
    assert "note: 1 of them not in the served index (e.g. 'i00000'" in both.stderr
    assert "`recsys index build` adds them" in both.stderr
    kept = runner.invoke(app, ["items", "unhide", "i00001"])
    assert kept.exit_code == 0 and kept.stderr == ""
