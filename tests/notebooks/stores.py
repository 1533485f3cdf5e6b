"""Small stores for the notebook tests: one holding its owner's items (imported, never built), and their counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recsys.config import Settings
from recsys.store import Store
from recsys.store.importers import run_import
from recsys.store.queries import stats


def own_store(home: Path, n: int = 3) -> Path:
    """A store with ``n`` items of its owner's (as after `recsys import items`), not built."""
    home.mkdir(parents=True, exist_ok=True)
    source = home.parent / f"{home.name}-items.jsonl"
    source.write_text("".join(json.dumps({"item_id": f"sku-{i}", "title": f"my product {i}", "category": "shoes"})
                              + "\n" for i in range(n)))
    settings = Settings(home=home, database_url=None)  # never a RECSYS_DATABASE_URL of the environment
    store = Store.open(settings)
    try:
        run_import(store, "items", source, settings=settings)
    finally:
        store.dispose()
    return home


def counts(home: Path) -> dict[str, Any]:
    """`recsys stats --json` of the store of ``home``."""
    store = Store.open(Settings(home=home, database_url=None))
    try:
        with store.session() as s:
            return stats(s)
    finally:
        store.dispose()


def as_if_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store reads as built (an index loaded), without minutes of building."""
    monkeypatch.setattr("recsys.service.Recommender.status", lambda self: {"ready": True})
