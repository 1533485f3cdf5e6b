"""Import throughput: rows/s for items and events on SQLite and PostgreSQL, on ../shared/data/hm when present.

Beside it, in the same run, a plain baseline: one ORM ``session.add`` per row for the same items (a sample), so the
ratio shows what the bulk path buys. Prints one JSON object.

    python bench/import_speed.py [--data ../shared/data/hm] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                 [--sqlite-only]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from recsys.config import Settings
from recsys.store import Item, Store
from recsys.store.importers import run_import


def _pg_db(admin_url: str) -> tuple[str, Any]:
    name = f"recsys_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def measure(url: str, data: Path, home: Path) -> dict[str, Any]:
    store = Store(url)
    store.upgrade()
    settings = Settings(home=home)
    stages: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(stage: str, _done: int) -> None:
        now = time.perf_counter()
        stages[stage] = stages.get(stage, 0.0) + now - last[0]
        last[0] = now

    t0 = time.perf_counter()
    report = run_import(store, "hm", data, settings=settings, progress=progress)
    total = time.perf_counter() - t0
    items, events = report.tables["items"].inserted, report.tables["events"].inserted
    t1 = time.perf_counter()
    run_import(store, "hm", data, settings=settings)
    reimport = time.perf_counter() - t1

    # Baseline: the same items, one ORM add per row (a 2,000-row sample, in a fresh table state).
    sample = 2000
    with store.session() as s:
        s.execute(text("DELETE FROM item_media"))
        s.execute(text("DELETE FROM events"))
        s.execute(text("DELETE FROM items"))
    t2 = time.perf_counter()
    with store.session() as s:
        for i in range(sample):
            s.add(Item(external_id=f"x{i}", title="t", description="d", content_hash="h", attributes={}))
            s.flush()
    orm_rate = sample / (time.perf_counter() - t2)
    store.dispose()
    items_rate = items / max(stages.get("items", total), 1e-9)
    return {
        "items": items,
        "events": events,
        "items_rows_per_s": round(items_rate),
        "events_rows_per_s": round(events / max(stages.get("events", total), 1e-9)),
        "total_s": round(total, 2),
        "reimport_s": round(reimport, 2),
        "baseline_orm_items_rows_per_s": round(orm_rate),
        "items_speedup_vs_orm": round(items_rate / orm_rate, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/hm")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--sqlite-only", action="store_true",
                    help="skip PostgreSQL (the quick run): no database created or dropped there")
    args = ap.parse_args()
    needed = [args.data / name for name in ("articles.csv", "transactions.csv")]
    if not all(p.is_file() for p in needed):  # measured nothing: a failure, never a result (exit status 1)
        missing = " and ".join(str(p) for p in needed if not p.is_file())
        raise SystemExit(f"import_speed.py: --data {args.data}: no H&M data (no {missing}); point --data at the H&M "
                         "files (../shared/data/hm)")
    out: dict[str, Any] = {"bench": "import_speed", "data": str(args.data), "machine": platform.node(),
                           "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = measure(f"sqlite:///{tmp}/bench.db", args.data, Path(tmp) / "home")
        out["postgresql"] = ({"skipped": "--sqlite-only"} if args.sqlite_only
                             else measure_pg(args.pg, args.data, Path(tmp) / "home_pg"))
    print(json.dumps(out))


def measure_pg(pg: str, data: Path, home: Path) -> dict[str, Any]:
    """:func:`measure` on a scratch database of the PostgreSQL server ``pg`` names (created, then dropped)."""
    try:
        url, drop = _pg_db(pg)
    except Exception as e:  # no server: say so instead of failing the whole bench
        return {"skipped": f"PostgreSQL unavailable: {str(e).splitlines()[0]}"}
    try:
        return measure(url, data, home)
    finally:
        drop()


if __name__ == "__main__":
    main()
