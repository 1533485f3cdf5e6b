"""``recsys prune``: remove the encoder heads, vector snapshots, vector caches and ranker generations that nothing
references any more (index generations have their own prune: ``RECSYS_INDEX__KEEP_GENERATIONS``).

What stays, and why, is decided from what is on disk, and anything that cannot be told apart stays:

- encoder ids (``<preset>@<version>``: heads under ``encoders/<preset>/<version>/``, a snapshot under
  ``vectors/<id>/``, a cache ``cache/vectors/<id>.db``) that are a preset's current heads, that an index
  generation's manifest names (served, pending or a rollback's target), that a kept ranker was trained on, or that are
  newer than the preset's current heads (a fit whose build has not switched yet);
- ranker generations that are current, named by an experiment's variant, the newest ``keep`` (for ``recsys ranker
  rollback``), newer than the current one, or trained for the generation ``index/PENDING`` names.

It runs under the data directory's jobs lock (never beside a build, train or encoder fit) and the rankers' save lock
(never beside a ranker rollback). Each artifact's marker (a manifest, ``vectors.npz``, the SQLite file) goes first, so
a removal cut short leaves only a directory or file no reader takes for a valid artifact; the next prune finishes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.config import Settings
from recsys.encoders.cache import _safe
from recsys.errors import RecsysError
from recsys.files import fsync_dir
from recsys.index.pairing import JOBS_LOCK

MANIFEST = "manifest.json"
SNAPSHOT = "vectors.npz"
POINTER = "CURRENT"
_VERSION = re.compile(r"^\d{8}T\d{6}\d*Z$")
"""An encoder heads version as ``encoder fit`` names it (UTC time, so newer sorts later)."""
SAVE_LOCK_WAIT_S = 30.0
"""How long a prune waits for a ranker rollback holding the rankers' save lock (seconds)."""


class JobRunning(RecsysError):
    """A build, train or encoder fit holds the jobs lock: what it writes would be judged half-done."""

    code, status = "busy", 409


@dataclass(frozen=True)
class Found:
    """One artifact on disk: ``keep`` says why it stays (None: nothing references it)."""

    kind: str
    """``encoder`` (heads), ``vectors`` (snapshot), ``cache`` (SQLite vector cache) or ``ranker``."""
    path: Path
    keep: str | None = None


@dataclass
class PruneReport:
    """What a prune removed (or, in a dry run, would remove), kept with why, and could not remove with why."""

    removed: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    bytes_freed: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "kept": self.kept, "failed": self.failed, "bytes_freed": self.bytes_freed,
                "dry_run": self.dry_run}


def prune(settings: Settings, *, dry_run: bool = False, keep_rankers: int | None = None) -> PruneReport:
    """Remove (or with ``dry_run`` only list) every unreferenced artifact; failures are reported per artifact in
    ``failed`` and the rest go on. JobRunning when a build, train or encoder fit is running."""
    home = Path(settings.home)
    keep = settings.index.keep_generations if keep_rankers is None else keep_rankers
    report = PruneReport(dry_run=dry_run)
    with _jobs_lock(home), _save_lock(home / "rankers"):
        try:
            found = plan(settings, max(keep, 1))
        except OSError as e:
            raise RecsysError(f"cannot read what is under {home} ({e.strerror or e}: {e.filename}): nothing was "
                              "pruned; check the data directory's permissions") from e
        for f in found:
            rel = str(f.path.relative_to(home))
            if f.keep is not None:
                report.kept.append({"kind": f.kind, "path": rel, "reason": f.keep})
                continue
            size = _size(f)
            try:
                if not dry_run:
                    remove(f)
            except OSError as e:
                report.failed.append({"kind": f.kind, "path": rel, "error": f"{type(e).__name__}: "
                                      f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")})
                continue
            report.removed.append({"kind": f.kind, "path": rel, "bytes": size})
            report.bytes_freed += size
    return report


@contextlib.contextmanager
def _jobs_lock(home: Path) -> Iterator[None]:
    """The jobs lock, taken as ``recsys index build`` takes it to drop a stale PENDING: never waited for."""
    from filelock import FileLock, Timeout

    if not home.is_dir():  # nothing was ever built here: nothing to prune, and no directory made for the lock
        yield
        return
    lock = FileLock(str(home / JOBS_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:  # an OSError too: first
        raise JobRunning(f"a job (recsys build, train or encoder fit) is running in {home}: nothing was pruned; "
                         "run `recsys prune` again after it finishes") from None
    except OSError as e:
        raise RecsysError(f"cannot take the jobs lock {home / JOBS_LOCK} ({e.strerror or e}): nothing was pruned; "
                          "make RECSYS_HOME writable") from e
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _save_lock(root: Path) -> Iterator[None]:
    """The rankers' save lock: a ``recsys ranker rollback`` cannot switch to a generation while it is removed."""
    from filelock import Timeout

    from recsys.index.locks import build_lock
    from recsys.ranking.artifact import SAVE_LOCK

    with contextlib.ExitStack() as stack:
        try:  # only the taking: an error of the caller's body passes through as it is
            if root.is_dir():
                stack.enter_context(build_lock(root, SAVE_LOCK, timeout=SAVE_LOCK_WAIT_S))
        except Timeout:  # an OSError too: first
            raise JobRunning(f"a ranker rollback under {root} still holds {SAVE_LOCK} after {SAVE_LOCK_WAIT_S:g} "
                             "s: nothing was pruned; run `recsys prune` again after it finishes") from None
        except OSError as e:
            raise RecsysError(f"cannot take the rankers' lock {root / SAVE_LOCK} ({e.strerror or e}): nothing was "
                              "pruned; make RECSYS_HOME writable") from e
        yield


def plan(settings: Settings, keep_rankers: int) -> list[Found]:
    """Every artifact of the four kinds under the data directory, each with why it stays (None: removable)."""
    home = Path(settings.home)
    refs, unsure = _index_references(home / "index")
    rankers, named = _plan_rankers(settings, keep_rankers, dict(refs), unsure)
    for f in rankers:
        if f.keep is not None and (eid := named.get(f.path.name)):
            refs.setdefault(_safe(eid), f"named by ranker generation {f.path.name}, which is kept")
    encoders = _Encoders(home, refs, unsure)
    return [*encoders.heads(), *encoders.snapshots(), *encoders.caches(), *rankers]


def _index_references(root: Path) -> tuple[dict[str, str], str | None]:
    """(safe encoder id -> why, as named by index generations on disk; why nothing can be judged, or None)."""
    from recsys.index.layout import current_id, generations_dir
    from recsys.index.pairing import pending_id

    refs: dict[str, str] = {}
    gdir = generations_dir(root)
    if not gdir.is_dir():
        return refs, None
    marks = {current_id(root): " (served)", pending_id(root): " (index/PENDING)"}
    unsure = None
    for d in sorted(gdir.iterdir()):
        if not (d / MANIFEST).is_file():
            continue  # an interrupted index prune's leftover: never served
        try:
            eid = json.loads((d / MANIFEST).read_text(encoding="utf-8"))["encoder_id"]
        except (OSError, ValueError, KeyError, TypeError) as e:  # every other one is still read
            unsure = (f"index generation {d.name}'s manifest cannot be read ({type(e).__name__}), so which encoder "
                      "it names is unknown: remove that generation, then prune again")
            continue
        refs.setdefault(_safe(str(eid)), f"named by index generation {d.name}{marks.get(d.name, '')}")
    return refs, unsure


class _Encoders:
    """Heads, snapshots and caches of encoder ids, judged against the references and each preset's current heads."""

    def __init__(self, home: Path, refs: dict[str, str], unsure: str | None) -> None:
        self.home, self.refs, self.unsure = home, refs, unsure
        self.current: dict[str, str | None] = {}  # preset -> its CURRENT heads version (None: none readable)
        root = home / "encoders"
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if d.is_dir() and not d.name.startswith("."):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    self.current[d.name] = (d / POINTER).read_text(encoding="utf-8").strip() or None
                self.current.setdefault(d.name, None)
                if self.current[d.name]:
                    refs[_safe(f"{d.name}@{self.current[d.name]}")] = "current heads of its preset"
        self.by_safe = {_safe(p): p for p in self.current}

    def judge(self, safe_id: str) -> str | None:
        """Why the encoder id ``safe_id`` (as named on disk) stays, or None."""
        if safe_id in self.refs:
            return self.refs[safe_id]
        if self.unsure:
            return self.unsure
        name, at, version = safe_id.rpartition("@")
        preset = self.by_safe.get(name) if at else None
        if preset is None:
            return "no heads of its preset under encoders/ (another preset, or one never fitted): left alone"
        cur = self.current[preset]
        if cur is None:
            return f"encoders/{preset}/CURRENT is missing or empty: which heads are current cannot be told"
        if version == "unfitted":
            return None  # the preset has fitted heads: vectors of random ones serve nothing
        if not (_VERSION.match(version) and _VERSION.match(cur)):
            return "not a heads version `recsys encoder fit` names: left alone"
        if version > cur:
            return "newer than the current heads (fitted by a build that has not switched to them yet)"
        return None

    def heads(self) -> Iterator[Found]:
        for preset in self.current:
            for d in sorted((self.home / "encoders" / preset).iterdir()):
                if d.is_dir() and not d.name.startswith("."):
                    yield Found("encoder", d, self.judge(_safe(f"{preset}@{d.name}")))

    def snapshots(self) -> Iterator[Found]:
        root = self.home / "vectors"
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if d.is_dir() and not d.name.startswith("."):
                yield Found("vectors", d, self.judge(d.name))

    def caches(self) -> Iterator[Found]:
        root = self.home / "cache"
        features = root / "features"
        for d in sorted(features.iterdir()) if features.is_dir() else []:
            yield Found("cache", d, "tower features, shared by every heads version fitted on these towers")
        vdir = root / "vectors"
        ids = sorted({i for p in vdir.iterdir() if (i := _cache_id(p.name))}) if vdir.is_dir() else []
        for safe_id in ids:
            yield Found("cache", vdir / f"{safe_id}.db", self.judge(safe_id))


_SIDECAR = re.compile(r"^(?P<id>[^/]+?)\.db(?:\.damaged-[0-9T]+)?(?:-wal|-shm|-journal)?$")


def _cache_id(name: str) -> str | None:
    """The encoder id of a file under ``cache/vectors``: its database, WAL or shared-memory file, or one set aside
    as damaged (:class:`~recsys.encoders.cache.VectorCache`); None for anything else."""
    m = _SIDECAR.match(name)
    return m.group("id") if m and not name.startswith(".") else None


def _cache_files(db: Path) -> list[Path]:
    """The cache's files: the database first (what a reader opens), then its WAL, shared memory and set-asides."""
    safe_id = db.name.removesuffix(".db")
    rest = sorted(p for p in db.parent.iterdir() if p != db and _cache_id(p.name) == safe_id)
    return [db, *rest]


def _plan_rankers(settings: Settings, keep: int, indexed: dict[str, str],
                  unsure: str | None = None) -> tuple[list[Found], dict[str, str]]:
    """Ranker generation directories, judged; and the encoder id each readable one was trained on. ``indexed``:
    the (safe) encoder ids of the index generations kept on disk, each of which keeps its newest ranker, so that a
    rollback to that generation can serve recommendations again (`recsys ranker rollback`); ``unsure``: why an
    index generation's encoder is unknown (then every ranker stays: any may be the one it needs)."""
    from recsys.ranking.artifact import current_version
    from recsys.ranking.generations import list_generations

    root = Path(settings.home) / "rankers"
    if not root.is_dir():
        return [], {}
    gens = list_generations(root)  # readable ones, oldest first
    order = [g.version for g in gens]
    named = {g.version: str(g.encoder_id) for g in gens if g.encoder_id}
    why: dict[str, str] = {}
    cur = current_version(root)
    if cur in order:
        why[cur] = "the current ranker"
        for v in order[order.index(cur) + 1 :]:
            why.setdefault(v, "newer than the current ranker (a training may have just saved it)")
    else:
        for v in order:
            why[v] = (f"rankers/CURRENT {'names ' + repr(cur) + ', which is gone' if cur else 'is missing'}: "
                      "`recsys ranker rollback` picks among these")
    for v, said in experiment_rankers(settings, order).items():
        why.setdefault(v, said)
    pending = _pending_encoder(Path(settings.home) / "index")
    paired = next((g.version for g in reversed(gens) if pending and g.encoder_id == pending), None)
    if paired is not None:
        why.setdefault(paired, "trained for the index generation index/PENDING names")
    for v in order if unsure is not None else []:
        why.setdefault(v, str(unsure))
    for safe_id, said in indexed.items():
        newest = next((g.version for g in reversed(gens) if g.encoder_id and _safe(str(g.encoder_id)) == safe_id), None)
        if newest is not None:
            why.setdefault(newest, f"the newest ranker on {safe_id}, the encoder of {said.removeprefix('named by ')}"
                                   ": `recsys index rollback` to it needs a ranker")
    for v in order[-keep:]:
        why.setdefault(v, f"one of the newest {keep} (for `recsys ranker rollback`)")
    out = []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue  # .tmp-*: a save in progress or killed, which the next save clears
        if d.name == cur:
            out.append(Found("ranker", d, "the current ranker"))
        elif d.name in order:
            out.append(Found("ranker", d, why.get(d.name)))
        elif (d / MANIFEST).exists():
            out.append(Found("ranker", d, "its manifest cannot be read: delete it by hand if nothing needs it"))
        else:  # no manifest: a removal cut short (a save renames a generation in with its manifest)
            out.append(Found("ranker", d, None))
    return out, named


def experiment_rankers(settings: Settings, versions: list[str]) -> dict[str, str]:
    """Version -> why, for the ranker generations experiments' variants name (by version or ``ranker-`` id); every
    generation when the experiments cannot be read (which they name is then unknown)."""
    from recsys.experiments import load_experiments

    try:
        experiments = load_experiments(settings)
    except RecsysError as e:
        return {v: f"the experiments cannot be read ({e.message}): which rankers they name is unknown"
                for v in versions}
    out: dict[str, str] = {}
    for exp in experiments.all:
        for variant in exp.variants:
            name = variant.ranker
            if name is not None:
                v = name if name in versions else name.removeprefix("ranker-")
                out.setdefault(v, f"named by experiment {exp.name!r}, variant {variant.name!r}")
    return out


def _pending_encoder(root: Path) -> str | None:
    """The encoder id of the index generation ``index/PENDING`` names, or None."""
    from recsys.index.layout import generations_dir
    from recsys.index.pairing import pending_id

    gid = pending_id(root) if root.is_dir() else None
    if gid is None:
        return None
    try:
        return str(json.loads((generations_dir(root) / gid / MANIFEST).read_text(encoding="utf-8"))["encoder_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(f: Found) -> None:
    """Delete one artifact, its marker first: cut short anywhere, what is left is no artifact a reader takes for
    valid (heads and rankers need their manifest, a snapshot its ``vectors.npz``), and the next prune finishes it.
    OSError (permission denied, something vanished meanwhile) when it cannot be completed."""
    if f.kind == "cache":
        _remove_cache(f.path)
        return
    marker = f.path / (SNAPSHOT if f.kind == "vectors" else MANIFEST)
    marker.unlink(missing_ok=True)  # missing: a removal cut short before, finished now
    fsync_dir(f.path)
    shutil.rmtree(f.path)
    fsync_dir(f.path.parent)


def _remove_cache(db: Path) -> None:
    """A SQLite cache: its WAL folded in first (so no WAL outlives its database), then the database, then what is
    left beside it. A damaged database that cannot be opened is removed all the same (derived data)."""
    if db.is_file() and Path(f"{db}-wal").exists():
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(str(db))
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()
    files = _cache_files(db)
    if db.exists() or len(files) == 1:  # raises FileNotFoundError when the whole cache vanished meanwhile
        db.unlink()
    for p in files[1:]:
        p.unlink(missing_ok=True)  # closing the checkpoint's connection may have removed the WAL itself
    fsync_dir(db.parent)


def _size(f: Found) -> int:
    """Bytes the artifact holds (0 for what cannot be read)."""
    paths: list[Path] = []
    if f.kind == "cache":
        with contextlib.suppress(OSError):
            paths = _cache_files(f.path)
    else:
        for d, _, names in os.walk(f.path):
            paths += [Path(d) / n for n in names]
    total = 0
    for p in paths:
        with contextlib.suppress(OSError):
            total += p.lstat().st_size
    return total
