"""Whether the database and the data directory belong together, judged from a sample of the served generation.

A data directory's index generations hold the item ids of the database they were built from. When the database
knows few of them (not even as deleted), RECSYS_DATABASE_URL names another deployment's database (or an empty one)
than RECSYS_HOME's: a server with such a pair is kept out of rotation (``/readyz`` 503, :class:`recsys.api.app.
Runtime`), and its item writes are not published (:class:`recsys.catalogue.Catalogue`), since a build from its
catalogue would replace every replica's index.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import IncompatibleArtifact

SAMPLE = 1000
"""Ids read per check: evenly spaced over the generation, one indexed query."""
MIN_SAMPLE = 20
"""Below this many items a generation says too little to judge (a catalogue of a few items: a trial, a test), and
losing it to another database's costs little: neither this check nor the build's (:mod:`recsys.index.catalog`)."""


class StoreMismatch(IncompatibleArtifact):
    """The database does not know most of the served generation's items (not even as deleted): it and the data
    directory most likely belong to different deployments, and publishing its catalogue would replace every
    replica's."""


def refuse_mismatch(store: Any, settings: Any, root: Path, doing: str) -> None:
    """StoreMismatch (saying that nothing was ``doing``) when :func:`served_mismatch` finds the pair mismatched:
    checked before a job writes anything shared under the data directory (vectors, heads, generations)."""
    why = served_mismatch(store, settings, root)
    if why is not None:
        raise StoreMismatch(f"{why}; nothing was {doing}. If this database's catalogue really is meant to replace "
                            "the served one, run `recsys build --force` (or `recsys embed` and `recsys index build "
                            "--force`)")


def sample_ids(ids: Sequence[str], n: int = SAMPLE) -> list[str]:
    """Up to ``n`` of ``ids``, evenly spaced (the first and the last included)."""
    if len(ids) <= n:
        return list(ids)
    return [ids[int(r)] for r in np.linspace(0, len(ids) - 1, n).round()]


def known_count(store: Any, ids: Sequence[str]) -> int:
    """How many of ``ids`` the store holds in any state (live, hidden or deleted: deleting is how a catalogue
    legitimately shrinks)."""
    from sqlalchemy import func, select

    from recsys.store.tables import Item

    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Item).where(Item.external_id.in_(list(ids)))) or 0)


def mismatch(store: Any, settings: Any, generation_id: str, ids: Sequence[str]) -> str | None:
    """Why ``store`` and the data directory serving generation ``generation_id`` (of item ``ids``) look like they
    belong to different deployments (the store knows under half of a sample of ``ids``), or None."""
    from recsys.config import without_password

    picked = sample_ids(ids)
    if len(picked) < MIN_SAMPLE:
        return None
    known = known_count(store, picked)
    if 2 * known >= len(picked):
        return None
    url = without_password(str(getattr(store, "url", settings.db_url)))
    return (f"RECSYS_DATABASE_URL and RECSYS_HOME look mismatched: the database {url} knows {known} of "
            f"{len(picked)} items sampled from index generation {generation_id}, which the data directory "
            f"{Path(settings.home).absolute()} serves. Check that both name the same deployment (every server, "
            "worker and job must share the two)")


def served_mismatch(store: Any, settings: Any, root: Path) -> str | None:
    """:func:`mismatch` for the generation served now under index ``root`` (None when there is none, or it cannot
    be read: a build replaces it)."""
    from recsys.index.layout import current_id

    gid = current_id(root)
    if gid is None:
        return None
    picked = _served_sample(str(root), gid)
    return None if picked is None else mismatch(store, settings, gid, picked)


def served_ids(root: Path, generation_id: str) -> np.ndarray | None:
    """The ids generation ``generation_id`` serves (its dead rows left out), or None when it cannot be read (a build
    replaces it)."""
    import pandas as pd

    from recsys.index.build import DEAD_FILE
    from recsys.index.layout import generations_dir
    from recsys.index.meta import META_FILE

    gdir = generations_dir(root) / generation_id
    try:  # the id column alone: the whole metadata (attributes parsed) is seconds at 10M items
        ids = pd.read_parquet(gdir / META_FILE, columns=["item_id"])["item_id"].astype(str).to_numpy()
        return ids[~np.load(gdir / DEAD_FILE)]
    except (OSError, ValueError, KeyError, IndexError):
        return None


@lru_cache(maxsize=8)
def _served_sample(root: str, generation_id: str) -> list[str] | None:
    """A sample of the ids generation ``generation_id`` serves (a generation never changes: read once)."""
    ids = served_ids(Path(root), generation_id)
    return None if ids is None else sample_ids(ids.tolist())
