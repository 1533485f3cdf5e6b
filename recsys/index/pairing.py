"""An index generation is served as a pair with the ranker trained on its vectors (``recsys build``).

``PENDING`` names the generation a build wrote to serve later, with the ranker it trains on it: kept from pruning
meanwhile. A build that dies before its publish (killed, a failed training) leaves it behind: *stale* once no
build or train holds the data directory's jobs lock (:data:`JOBS_LOCK`, taken by :mod:`recsys.jobs`). A stale one
is dropped by the next build and by a standalone index build, so the generation it names is pruned like any
other; ``recsys index list`` marks it until then. :func:`refuse_unrankable` keeps a rollback from serving a
generation the current ranker cannot rank.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.errors import IncompatibleArtifact
from recsys.files import write_text_atomic

if TYPE_CHECKING:
    from recsys.index.layout import Manifest

log = logging.getLogger(__name__)

PENDING = "PENDING"
"""Names a generation written to be served later (``recsys build`` serves it with the ranker trained on it): kept
from pruning meanwhile, whatever deltas other processes publish."""

JOBS_LOCK = "jobs.lock"
"""Under the data directory: held by ``recsys build`` and ``recsys train`` from start to end."""

RankerFit = Callable[[str], str | None]
"""For an index generation id, why the current ranker cannot rank its vectors (another encoder or dimension), or
None when it can (or no ranker is current)."""


def pending_id(root: Path) -> str | None:
    """The generation ``PENDING`` names under index ``root``, or None."""
    try:
        name = (Path(root) / PENDING).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def hold(root: Path, generation_id: str) -> None:
    """Keep ``generation_id`` from pruning until :func:`recsys.index.layout.publish` serves it (one at a time)."""
    write_text_atomic(Path(root) / PENDING, generation_id + "\n")


def drop_pending(root: Path) -> str | None:
    """Remove ``PENDING`` (the generation it named, or None). Only for a caller that holds the jobs lock, or knows
    no build is running: :func:`drop_stale_pending` otherwise."""
    gid = pending_id(root)
    if gid is not None:
        (Path(root) / PENDING).unlink(missing_ok=True)
        log.info("index generation %s was written by a build that never published it (interrupted): no longer "
                 "held from pruning", gid)
    return gid


def jobs_running(home: Path) -> bool | None:
    """Whether a build or train holds the jobs lock of data directory ``home`` now; None when that cannot be told
    (the lock file cannot be opened: a read-only directory). Never creates the lock file."""
    from filelock import FileLock, Timeout

    path = Path(home) / JOBS_LOCK
    if not path.is_file():
        return False  # no build or train ever ran here (each takes the lock first)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return None
    lock.release()
    return False


def drop_stale_pending(root: Path, home: Path) -> str | None:
    """Remove a stale ``PENDING`` under index ``root``: one no running build will publish (the jobs lock of
    ``home`` is free, and held while it is removed so that no build starts meanwhile). The generation it named, or
    None (none, a build running, or the lock cannot be taken)."""
    from filelock import FileLock, Timeout

    if pending_id(root) is None:
        return None
    lock = FileLock(str(Path(home) / JOBS_LOCK))
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):  # a build is running (its PENDING), or a read-only home: left as it is
        return None
    try:
        return drop_pending(root)
    finally:
        lock.release()


def refuse_unrankable(target: Manifest, served: Manifest | None, ranker_fit: RankerFit | None) -> None:
    """IncompatibleArtifact when the current ranker cannot rank generation ``target`` (recommendations would be
    off), unless nothing gets worse: no generation is served, or the current ranker cannot rank the served one
    either."""
    if ranker_fit is None:
        return
    why = ranker_fit(target.generation_id)
    if why is None or served is None or ranker_fit(served.generation_id) is not None:
        return
    raise IncompatibleArtifact(
        f"the current ranker cannot rank index generation {target.generation_id} ({why}): serving it would turn "
        f"recommendations off; nothing changed, {served.generation_id} stays served. Pass --force to serve it "
        "anyway (then serve a ranker trained on its vectors: `recsys ranker list`), or run `recsys build`")
