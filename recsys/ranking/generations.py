"""Ranker generations on disk, listed and rolled back like index generations (``recsys ranker list|rollback``).

::

    <home>/rankers/
      CURRENT              name of the served generation (replaced atomically; servers follow it on refresh)
      <version>/           one trained ranker: manifest.json (written last), net.pt, statistics
      .tmp-*/              a save in progress or killed: never listed

Rolling back only rewrites ``CURRENT``, after checking that the chosen generation can rank the served index's
vectors (same encoder and dimension, a format and feature list this recsys reads): an incompatible one is refused
before anything changes, so a running server never meets it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.errors import IncompatibleArtifact, NotFound, RankerError
from recsys.ranking.artifact import (
    MANIFEST,
    check_compatible,
    current_generation,
    current_version,
    damage,
    save_generation,
    write_pointer,
)
from recsys.ranking.candidates import VectorSearch
from recsys.ranking.catalog import VectorsLike
from recsys.ranking.pipeline import RankingPipeline
from recsys.ranking.train import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankerGeneration:
    """One saved ranker, as listed: its directory name (``version``) and the manifest's headline fields."""

    version: str
    created_at: str
    encoder_id: str | None
    dim: int | None
    events: int | None
    metrics: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def ranker_id(self) -> str:
        return f"ranker-{self.version}"

    def incompatibility(self, encoder_id: str | None = None, dim: int | None = None) -> str | None:
        """Why this generation cannot serve vectors of ``encoder_id``/``dim`` (None when it can)."""
        try:
            check_compatible(self.manifest, self.version, encoder_id, dim)
        except IncompatibleArtifact as e:
            return e.message
        return None


def list_generations(root: Path) -> list[RankerGeneration]:
    """Complete generations under ``root``, oldest first (unreadable ones are skipped with a warning)."""
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        f = p / MANIFEST
        if p.name.startswith(".") or not p.is_dir() or not f.is_file():
            continue
        try:
            m = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            log.warning("skipping ranker generation %s: %s", p.name, e)
            continue
        # Generations saved before created_at was recorded are placed by their manifest's write time.
        created = str(m.get("created_at") or datetime.fromtimestamp(f.stat().st_mtime, UTC).isoformat())
        out.append(RankerGeneration(p.name, created, m.get("encoder_id"), m.get("dim"), m.get("events"),
                                    dict(m.get("metrics") or {}), m))
    return sorted(out, key=lambda g: (g.created_at, g.version))


def rollback(root: Path, to: str | None = None, *, encoder_id: str | None = None, dim: int | None = None) -> str:
    """Make ``to`` (default: the generation saved before the current one) current; returns its version.

    ``encoder_id`` and ``dim`` are those of the served index: a generation trained on other vectors is refused
    with IncompatibleArtifact and ``CURRENT`` is left as it was.
    """
    gens = {g.version: g for g in list_generations(root)}
    order = list(gens)
    cur = current_version(root)
    if to is None:
        if cur is None and order:
            raise RankerError(f"no current ranker under {root} (its CURRENT file is missing) to roll back from; name "
                              f"the generation to serve: `recsys ranker rollback {order[-1]}` (see `recsys ranker "
                              "list`)")
        if cur is None:
            raise RankerError(f"no ranker generation under {root}; run `recsys train` (or `recsys build`)")
        if cur not in gens or order.index(cur) == 0:
            raise NotFound(f"no ranker generation older than {cur!r} to roll back to under {root}; "
                           "see `recsys ranker list`")
        to = order[order.index(cur) - 1]
    if to.startswith("ranker-") and to not in gens:
        to = to.removeprefix("ranker-")  # the id recommendations and /readyz show
    target = gens.get(to)
    if target is None:
        raise NotFound(f"ranker generation {to!r} not found under {root}; see `recsys ranker list`")
    why = target.incompatibility(encoder_id, dim)
    if why is not None:
        fits = [v for v, g in gens.items() if g.incompatibility(encoder_id, dim) is None]
        hint = f"generations that fit: {', '.join(fits)}" if fits else "none on disk fits"
        raise IncompatibleArtifact(f"refusing to roll back: {why} ({hint}); the current ranker stays {cur!r}")
    bad = damage(root / to)
    if bad is not None:
        raise IncompatibleArtifact(f"refusing to roll back: ranker generation {to} is damaged ({bad}); the current "
                                   f"ranker stays {cur!r}")
    write_pointer(root, to)
    log.info("ranker generation %s is now current (was %s)", to, cur)
    return to


def rankers_root(settings: Any) -> Path:
    """Where ranker generations live: ``<home>/rankers``."""
    return Path(settings.home) / "rankers"


def train_ranker(events: pd.DataFrame, items: pd.DataFrame | None, vectors: VectorsLike, settings: Any, *,
                 search: VectorSearch | None = None, progress: Progress | None = None,
                 manifest: dict[str, Any] | None = None) -> tuple[RankingPipeline, Path]:
    """``recsys train``: fit on the stored events and save a new current generation under ``<home>/rankers``;
    ``manifest`` adds fields to the saved manifest (e.g. the events watermark the build compares)."""
    pipe = RankingPipeline.fit(events, items, vectors, settings, search=search, progress=progress)
    pipe.manifest.update(manifest or {})
    return pipe, save_generation(pipe, rankers_root(settings))


def load_current_ranker(settings: Any, vectors: VectorsLike, items: pd.DataFrame | None = None, *,
                        search: VectorSearch | None = None) -> RankingPipeline | None:
    """The current ranker generation over these vectors, or None when none was trained yet.

    Raises IncompatibleArtifact when it was trained on another encoder or dimension.
    """
    root = rankers_root(settings)
    path = current_generation(root)
    if path is None:
        warn_unserved(root)
        return None
    return RankingPipeline.load(path, vectors=vectors, items=items, expect_encoder_id=vectors.encoder_id,
                                search=search, settings=settings)


def warn_unserved(root: Path) -> str | None:
    """Why no ranker is served although trained ones are on disk (a lost or dangling ``CURRENT``), logged; None
    when none was trained."""
    gens = list_generations(root)
    if not gens:
        return None
    name = current_version(root)
    lost = f"its CURRENT names {name!r}, which is not there" if name else "its CURRENT file is missing"
    why = (f"no ranker is served from {root}: {lost}, but {len(gens)} generation(s) are; serve one with `recsys "
           f"ranker rollback {gens[-1].version}` (see `recsys ranker list`)")
    log.warning("%s", why)
    return why
