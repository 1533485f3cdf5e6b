"""An event file's absurd `value` (1e308: ranking sums the prices paid per item, and two such made the sum inf) is a
bad row naming the allowed range, as POST /v1/events refuses it; a value within the range is stored."""

from __future__ import annotations

from pathlib import Path

from recsys.config import Settings
from recsys.store import Store
from recsys.store.importers import run_import

RANGE = "value {} is out of range: an event's value (a price paid, a rating) must lie within -1e12..1e12"


def test_an_absurd_event_value_is_a_bad_row_naming_the_range(store: Store, settings: Settings,
                                                             tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,One\n")
    run_import(store, "items", items, settings=settings)
    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,type,timestamp,value\nu1,i1,purchase,2026-01-01,1e308\n"
                 "u1,i1,purchase,2026-01-02,-1e308\nu1,i1,purchase,2026-01-03,1000000000000\n"
                 "u1,i1,purchase,2026-01-04,19.99\n")
    report = run_import(store, "events", f, settings=settings)
    c = report.tables["events"]
    assert (c.read, c.inserted, c.skipped) == (4, 2, 2)
    assert [(b.file, b.line, b.reason) for b in report.bad_rows] == [
        (str(f), 2, RANGE.format("1e+308")), (str(f), 3, RANGE.format("-1e+308"))]
