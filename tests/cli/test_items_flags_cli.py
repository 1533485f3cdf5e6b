"""`recsys items hide|unhide|delete` say what happened per item: "1 item(s) updated" had counted the ids found, so
hiding a hidden item, or unhiding a deleted one (which stays deleted, never served), read as a change."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recsys.cli import app
from recsys.errors import UnknownItem


def _items(home: Path, tmp_path: Path) -> CliRunner:
    (tmp_path / "items.csv").write_text("item_id,title\na,A\nb,B\nc,C\nd,D\n")
    runner = CliRunner()
    assert runner.invoke(app, ["import", "items", str(tmp_path / "items.csv")]).exit_code == 0
    return runner


def test_hide_counts_only_the_items_it_changed(home: Path, tmp_path: Path) -> None:
    runner = _items(home, tmp_path)
    first = runner.invoke(app, ["items", "hide", "a"])
    assert first.exit_code == 0 and first.stdout == "1 item(s) updated: 1 hidden\n"
    again = runner.invoke(app, ["items", "hide", "a", "b", "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout.splitlines()[-1]) == {"action": "hide", "updated": 1, "changed": ["b"],
                                                         "unchanged": ["a"]}
    text = runner.invoke(app, ["items", "hide", "a", "b"])
    assert text.exit_code == 0 and text.stdout == "0 item(s) updated: 2 already hidden ('a', 'b')\n"
    gone = runner.invoke(app, ["items", "delete", "c", "c"])
    assert gone.exit_code == 0 and gone.stdout == "1 item(s) updated: 1 deleted\n"
    assert runner.invoke(app, ["items", "delete", "c"]).stdout == "0 item(s) updated: 1 already deleted ('c')\n"


def test_unhiding_a_deleted_item_says_it_stays_deleted_and_what_brings_it_back(home: Path, tmp_path: Path) -> None:
    runner = _items(home, tmp_path)
    assert runner.invoke(app, ["items", "hide", "a", "b"]).exit_code == 0
    assert runner.invoke(app, ["items", "delete", "b", "c"]).exit_code == 0
    res = runner.invoke(app, ["items", "unhide", "a", "b", "c", "d"])
    assert res.exit_code == 1  # c and b are still never served: not what was asked
    assert res.stdout == ("2 item(s) updated: 1 unhidden, 1 already shown ('d'), 1 unhidden but still deleted ('b'), "
                          "1 not hidden but deleted ('c')\n")
    assert "item 'b' was deleted; a PUT of the item (or an import with its title) brings it back" in res.stderr
    assert "(and 1 more deleted)" in res.stderr
    as_json = runner.invoke(app, ["items", "unhide", "c", "--json"])
    assert as_json.exit_code == 1 and "item 'c' was deleted" in as_json.stderr
    assert json.loads(as_json.stdout.splitlines()[-1]) == {
        "action": "unhide", "updated": 0, "changed": [], "unchanged": ["c"], "still_deleted": ["c"],
        "not_in_served_index": []}
    shown = runner.invoke(app, ["items", "show", "c", "--json"])
    assert json.loads(shown.stdout.splitlines()[-1])["deleted"] is True


def test_an_unknown_id_changes_nothing(home: Path, tmp_path: Path) -> None:
    runner = _items(home, tmp_path)
    res = runner.invoke(app, ["items", "hide", "a", "nope"])
    assert isinstance(res.exception, UnknownItem) and "nothing was changed" in str(res.exception)  # main(): exit 2
    assert runner.invoke(app, ["items", "hide", "a"]).stdout == "1 item(s) updated: 1 hidden\n"


def test_items_show_prints_text_as_written_in_any_script(home: Path, tmp_path: Path) -> None:
    """The readable form is for a merchant: "東京タワー Größe", not "\\u6771\\u4eac..." (the --json form may escape)."""
    (tmp_path / "items.csv").write_text("item_id,title\nj,東京タワー Größe\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["import", "items", str(tmp_path / "items.csv")]).exit_code == 0
    shown = runner.invoke(app, ["items", "show", "j"])
    assert shown.exit_code == 0 and '"title": "東京タワー Größe"' in shown.stdout
