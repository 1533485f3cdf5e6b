"""`recsys stats` in text gives the events by type one per aligned line, not a Python dict."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from recsys.cli import app


def test_stats_text_has_one_line_per_event_type(home: Path, tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("item_id,title\na,A\nb,B\n")
    (tmp_path / "events.csv").write_text("user_id,item_id,type,timestamp\nu,a,view,2026-01-01\n"
                                          "u,b,purchase,2026-01-02\nv,b,purchase,2026-01-02\n")
    runner = CliRunner()
    for kind in ("items", "events"):
        assert runner.invoke(app, ["import", kind, str(tmp_path / f"{kind}.csv")]).exit_code == 0
    out = runner.invoke(app, ["stats"]).stdout
    assert "{" not in out and "events: 3\n" in out
    lines = out.splitlines()
    rows = [line.split() for line in lines[lines.index("events_by_type:") + 1:]]
    assert ["purchase", "2"] in rows and ["view", "1"] in rows
