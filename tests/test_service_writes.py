"""Concurrent writers of the same new items through the service: every writer is told its item was stored, on
SQLite and PostgreSQL (the writer reads which ids exist before inserting the rest, which races)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from recsys.config import Settings
from recsys.service import Recommender
from recsys.store import Store
from recsys.store.tables import Item


def test_concurrent_writers_of_the_same_new_items(store: Store, tmp_path: Path) -> None:
    rec = Recommender(Settings(home=tmp_path / "home", database_url=store.url), store)
    start = threading.Barrier(16)

    def put(n: int) -> list[dict[str, Any]]:
        start.wait()
        items = [{"item_id": f"same-{i}", "title": f"writer {n} item {i}"} for i in range(20)]
        return rec.catalogue.upsert_items(items, index=False)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(put, range(16)))
    assert all(r["status"] == "stored" for rs in results for r in rs)
    with store.session() as s:
        assert s.scalar(select(func.count(Item.id))) == 20
