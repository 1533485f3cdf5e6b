"""Small stores for the notebook tests: one holding its owner's items (imported, never built), one of given items,
users and events (never built either), and their counts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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


def shop_store(home: Path, items: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]],
               users: Sequence[str] = (), hidden: Sequence[str] = ()) -> Store:
    """An open store (dispose it) of ``items``, ``users`` (ids) and ``events`` (records as `recsys import` reads
    them), not built; the ``hidden`` items hidden, as after `recsys items hide`."""
    from recsys.store.items import set_flags

    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, database_url=None)
    store = Store.open(settings)
    for kind, rows in (("items", items), ("users", [{"user_id": u} for u in users]), ("events", events)):
        if rows:
            source = home.parent / f"{home.name}-{kind}.jsonl"
            source.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows))
            run_import(store, kind, source, settings=settings)
    if hidden:
        with store.session() as s:
            set_flags(s, list(hidden), hidden=True)
    return store


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
