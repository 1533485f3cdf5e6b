"""`recsys import`'s summary counts every skipped row, though the report keeps only a sample of them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import get_settings


def test_the_summary_counts_skipped_rows_beyond_the_reports_sample(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na1,A shirt\n")
    events = tmp_path / "events.csv"
    rows = [f"u{i},a1,purchase,2024-01-01T00:00:00" for i in range(3000)] + [f"v{i},zz,purchase,2024-01-01T00:00:00"
                                                                         for i in range(1100)]
    events.write_text("user_id,item_id,type,timestamp\n" + "\n".join(rows) + "\n")
    env = {"RECSYS_HOME": str(tmp_path / "home")}
    get_settings.cache_clear()  # RECSYS_HOME is read once per process otherwise
    assert CliRunner().invoke(app, ["import", "items", str(items)], env=env).exit_code == 0
    out = CliRunner().invoke(app, ["import", "events", str(events)], env=env)
    get_settings.cache_clear()
    assert "... and 1080 more" in out.output, out.output
