"""Ranker generations on disk, listed and rolled back like index generations (``recsys ranker list|rollback``).

::

    <home>/rankers/
      CURRENT              name of the served generation (replaced atomically; servers follow it on refresh)
      <version>/           one trained ranker: manifest.json (written last), net.pt, statistics
      .tmp-*/              a save in progress or killed: never listed
      save.lock            held by a save and by a rollback while they switch CURRENT

Rolling back only rewrites ``CURRENT``, after checking that the chosen generation can rank the served index's
vectors (same encoder and dimension, a format and feature list this recsys reads): an incompatible one is refused
before anything changes, so a running server never meets it.
"""

from __future__ import annotations

import errno
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.errors import IncompatibleArtifact, NotFound, RankerError
from recsys.index.layout import POINTER, build_lock
from recsys.ranking.artifact import (
    MANIFEST,
    SAVE_LOCK,
    check_compatible,
    current_generation,
    current_version,
    damage,
    read_manifest,
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

    @property
    def has_net(self) -> bool:
        """Whether it was trained with a network (without one it ranks in candidate order: no training example)."""
        return bool(self.manifest.get("has_net"))

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


ROLLBACK_WAIT_S = 30.0
"""How long a rollback waits for a ranker save holding its lock (a save writes a few files: seconds) before it is
refused."""


def rollback(root: Path, to: str | None = None, *, encoder_id: str | None = None, dim: int | None = None) -> str:
    """Make ``to`` (default: the generation saved before the current one; the newest usable one, as
    :func:`newest_usable`, when ``CURRENT`` names one that is gone) current; returns its version.

    ``encoder_id`` and ``dim`` are those of the served index: a generation trained on other vectors is refused
    with IncompatibleArtifact and ``CURRENT`` is left as it was. Under the lock a save takes to switch ``CURRENT``
    (as the index's rollback runs under its build lock): a ``recsys train`` saving meanwhile switches before or
    after the rollback, never between its check and its switch. (A training that saves after the rollback still
    serves its new ranker, as it would have without one.)
    """
    from filelock import Timeout

    if not root.is_dir():  # nothing was ever trained here: refused (nothing to serve) without creating it for the lock
        return _switch(root, to, encoder_id, dim)
    try:
        with build_lock(root, SAVE_LOCK, timeout=ROLLBACK_WAIT_S):
            return _switch(root, to, encoder_id, dim)
    except Timeout:  # an OSError too: first
        raise RankerError(f"cannot roll back the ranker: a `recsys train` saving under {root} still holds "
                          f"{SAVE_LOCK} after {ROLLBACK_WAIT_S:g} s; nothing changed. Run it again when that "
                          "training has finished") from None
    except OSError as e:
        fix = "Make RECSYS_HOME writable" if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "Free space"
        raise RankerError(f"cannot roll back the ranker: {root} cannot be written ({e.strerror or e}); nothing "
                          f"changed. {fix} and run it again") from e


def _switch(root: Path, to: str | None, encoder_id: str | None, dim: int | None) -> str:
    """:func:`rollback`'s choice, checks and switch, under the save lock."""
    gens = {g.version: g for g in list_generations(root)}
    order = list(gens)
    cur = current_version(root)
    checked = None
    if to is None:
        if cur is None and order:
            raise RankerError(f"no current ranker under {root} (its CURRENT file is missing) to roll back from; "
                              f"{serve_hint(root, encoder_id, dim)}")
        if cur is None:
            raise RankerError(f"no ranker generation under {root}; run `recsys train` (or `recsys build`)")
        if cur not in gens:  # deleted or unreadable: "before" it means nothing; the newest one that can serve
            to = checked = newest_usable(root, encoder_id, dim)
            if to is None:
                raise NotFound(f"{POINTER} names {cur!r}, which is not a complete generation, and no other is intact "
                               f"and fits the served index under {root}; run `recsys train` (or `recsys build`)")
        elif order.index(cur) == 0:
            raise NotFound(f"no ranker generation older than {cur!r} to roll back to under {root}; "
                           "see `recsys ranker list`")
        else:
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
        raise IncompatibleArtifact(f"refusing to roll back: {why} ({hint}); the current ranker stays {cur or 'none'}")
    bad = None if to == checked else damage(root / to)  # newest_usable checked it already
    if bad is not None:
        raise IncompatibleArtifact(f"refusing to roll back: ranker generation {to} is damaged ({bad}); the current "
                                   f"ranker stays {cur or 'none'}")
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
    root = rankers_root(settings)
    if pipe.net is None:
        _keep_a_network(pipe, root)
    return pipe, save_generation(pipe, root)


class NetlessRefused(RankerError):
    """A training without a network was not saved: the current ranker, which has one, stays served."""


def _keep_a_network(pipe: RankingPipeline, root: Path) -> None:
    """Refuse (NetlessRefused) to replace an intact current ranker that has a network and ranks these vectors with
    ``pipe``, which has none (it would serve the candidate order). A first ranker, or one over a current one that
    is net-less, damaged or trained on other vectors (it cannot serve them), is saved as the fallback."""
    path = current_generation(root)
    why = pipe.manifest.get("no_network_reason", "no training examples")
    if path is not None and damage(path) is None:
        m = read_manifest(path)
        fits = m.get("encoder_id") == pipe.encoder_id and m.get("dim") == pipe.dim
        if m.get("has_net") and fits:
            raise NetlessRefused(
                f"the new ranker was not saved: it has no network and would rank in candidate order, so the current "
                f"ranker {path.name}, trained with a network, stays served. No training example because {why}")
    log.warning("ranker %s has no network (no training example, said above): it is saved and served, ranking in "
                "candidate order, as no current ranker with a network fits these vectors", pipe.ranker_id)


def current_repurchases(settings: Any) -> bool | None:
    """Whether the current ranker lists a shopper's own items again (None: no readable ranker). Fitted where under 1%
    of the events repeat an item (MovieLens), it never does, so buy-again has nothing to list."""
    path = current_generation(rankers_root(settings))
    try:
        return None if path is None else bool(read_manifest(path).get("repurchase", True))
    except (RankerError, IncompatibleArtifact):
        return None


def load_current_ranker(settings: Any, vectors: VectorsLike, items: pd.DataFrame | None = None, *,
                        search: VectorSearch | None = None) -> RankingPipeline | None:
    """The current ranker generation over these vectors, or None when none was trained yet.

    Raises IncompatibleArtifact when it was trained on another encoder or dimension.
    """
    root = rankers_root(settings)
    path = current_generation(root)
    if path is None:
        warn_unserved(root, vectors.encoder_id, int(vectors.fused.shape[1]))
        return None
    return RankingPipeline.load(path, vectors=vectors, items=items, expect_encoder_id=vectors.encoder_id,
                                search=search, settings=settings)


def warn_unserved(root: Path, encoder_id: str | None = None, dim: int | None = None) -> str | None:
    """Why no ranker is served although trained ones are on disk (a lost or dangling ``CURRENT``), logged; None
    when none was trained. ``encoder_id``/``dim``: the served index's (default: read from the index beside
    ``root``)."""
    gens = list_generations(root)
    if not gens:
        return None
    name = current_version(root)
    lost = f"its CURRENT names {name!r}, which is not there" if name else "its CURRENT file is missing"
    why = (f"no ranker is served from {root}: {lost}, but {len(gens)} generation(s) are; "
           f"{serve_hint(root, encoder_id, dim)}")
    log.warning("%s", why)
    return why


def newest_usable(root: Path, encoder_id: str | None = None, dim: int | None = None) -> str | None:
    """The newest generation that can serve the index (intact, trained on its encoder and dimension), one with a
    network before any without; None when there is none. Without ``encoder_id`` the served index's is read."""
    if encoder_id is None and dim is None:
        encoder_id, dim = _served_index(root)
    fallback = None
    for g in reversed(list_generations(root)):  # newest first: checksums are read only until one is found
        if g.incompatibility(encoder_id, dim) is None and (g.has_net or fallback is None) and \
                damage(root / g.version) is None:
            if g.has_net:
                return g.version
            fallback = g.version
    return fallback


def serve_hint(root: Path, encoder_id: str | None = None, dim: int | None = None) -> str:
    """The command that serves a ranker again: a rollback to :func:`newest_usable`, else a new training."""
    usable = newest_usable(root, encoder_id, dim)
    if usable is None:
        return ("none of them is intact and fits the served index (see `recsys ranker list`): run `recsys train` (or "
                "`recsys build`)")
    return (f"serve one with `recsys ranker rollback {usable}` (the newest intact one that fits the served index, "
            "one with a network first; see `recsys ranker list`)")


def _served_index(root: Path) -> tuple[str | None, int | None]:
    """Encoder id and dimension of the index beside ``root`` (``<home>/index``); (None, None) without one."""
    from recsys.errors import NoIndex
    from recsys.index.layout import generation_path
    from recsys.index.layout import read_manifest as index_manifest

    try:
        m = index_manifest(generation_path(root.parent / "index"))
    except (NoIndex, NotFound, IncompatibleArtifact):
        return None, None
    return m.encoder_id, m.dim
