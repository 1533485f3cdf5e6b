"""The notebooks' data directory: built on first run when empty, never mixed with someone's own data.

Each notebook's setup cell calls :func:`ready_store`, and ``notebooks/run_all.py`` asks :func:`refusal` before any
kernel starts, so the rule is written once: a store with no loadable index is filled (the demo, or a dataset
directory) only when it holds nothing; one holding the demo's own data (``demo-data/items.jsonl``, as ``recsys demo``
tells it) is built; any other is left as it is, with a message that says to build it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError

log = logging.getLogger(__name__)

DEMO_DIR = "demo-data"


def held(store: Any) -> tuple[int, int]:
    """(items, events) the store holds."""
    from recsys.store.queries import stats

    with store.session() as s:
        counts = stats(s)
    return int(counts["items"]), int(counts["events"])


def refusal(rec: Any) -> str | None:
    """Why the notebooks will not touch the store of ``rec`` (own data and no loadable index), or None."""
    status = rec.status()
    if status["ready"]:
        return None
    home = Path(rec.settings.home)
    items, events = held(rec.store)
    if not (items or events) or (home / DEMO_DIR / "items.jsonl").is_file():
        return None
    return (f"{home} holds {items:,} items and {events:,} events but no index the notebooks can load: "
            f"{status['reason']}. The notebooks import the demo or a dataset only into an empty data directory: "
            f"build this one first (`RECSYS_HOME={home} recsys build`), or point RECSYS_HOME at a built or an "
            "empty one")


def ready_store(rec: Any, data: str = "demo", *, demo_items: int = 150, demo_users: int = 30,
                say: Callable[[str], None] = log.info) -> dict[str, Any] | None:
    """Make the store of ``rec`` loadable: nothing to do (None) when it is; else import ``data`` ("demo", or an H&M
    or MovieLens directory) into an empty store, or take the demo's own data already there, and build (the build's
    report). Own data without an index is a ConfigError (:func:`refusal`): its owner builds it. ``say`` tells what
    is done before a long build (a notebook passes ``print``)."""
    from recsys.store.importers import run_import

    if rec.status()["ready"]:
        return None
    why = refusal(rec)
    if why is not None:
        raise ConfigError(why)
    home, store, settings = Path(rec.settings.home), rec.store, rec.settings
    demo = home / DEMO_DIR
    if any(held(store)):  # the demo's own data (refusal let it through): built, not imported again
        say(f"building the demo data already imported into {home}")
    elif data == "demo":
        from recsys.demo import generate_demo

        generate_demo(demo, n_items=demo_items, n_users=demo_users, seed=0)
        for kind in ("items", "users", "events"):
            run_import(store, kind, demo / f"{kind}.jsonl", settings=settings)
    else:
        source = Path(data)
        run_import(store, "hm" if (source / "articles.csv").exists() else "movielens", source, settings=settings)
    report: dict[str, Any] = rec.jobs.build()
    return report
