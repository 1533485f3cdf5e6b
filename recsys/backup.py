"""``recsys backup DEST``: a consistent copy of a live data directory that serves as it was (``RECSYS_HOME=DEST``).

What goes in, and why it is consistent while ``recsys serve`` runs and events arrive:

- the SQLite store, copied with SQLite's online backup API in one step (``pages=-1``): one read transaction, a
  snapshot of every commit before it, while writers go on (WAL). A stepped backup restarts whenever another
  connection writes; ``VACUUM INTO`` measured 3x slower on the demo store (53 against 16 ms). A PostgreSQL store is
  left to ``pg_dump``, whose command the report gives (without the password);
- the served index generation (and the one ``index/PENDING`` names), the current ranker (and those experiments'
  variants name), the encoder heads and vector snapshots of the encoder ids these name and of each preset's current
  heads, ``secrets/``, custom ``presets/``, the recorded media roots and an experiments file kept in the data
  directory; with ``with_caches`` also ``cache/`` (those ids' vector caches, the tower features) and ``onnx/``.

The artifacts are copied under the jobs lock (no build, train or encoder fit switches generations mid-copy), the
index's ``changes.lock`` and ``build.lock`` (no item write publishes a delta, no rollback or prune) and the rankers'
save lock (no ranker rollback). Everything is written into ``DEST.tmp-<pid>`` (inside an existing empty DEST),
``BACKUP.json`` last, then put in place: one cut short never looks complete, and what it wrote is removed. Files are
copied, never hard-linked. Old generations, rankers and caches are not copied; nor are item images.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.config import Settings
from recsys.encoders.cache import _safe
from recsys.errors import RecsysError
from recsys.files import fsync_dir
from recsys.index.pairing import JOBS_LOCK
from recsys.prune import JobRunning

MANIFEST_FILE = "BACKUP.json"
PUBLISH_WAIT_S = 60.0
"""How long a backup waits (at least) for item writes being published or a ranker rollback (seconds, both)."""
SAVE_LOCK = "save.lock"
"""``recsys.ranking.artifact.SAVE_LOCK`` (importing that module loads torch: seconds, for a name)."""
_SKIP_SUFFIXES = (".lock", "-wal", "-shm", "-journal")
"""Lock files (made again on use) and SQLite side files (each ``.db`` is copied through SQLite, whole)."""


@dataclass
class Part:
    """One thing copied: what it is, where it lies under DEST, its bytes and files."""

    name: str
    path: str
    bytes: int = 0
    files: int = 0


@dataclass
class BackupReport:
    """What a backup wrote: the parts, the database's kind and copy, notes for the operator (also said on stderr)."""

    dest: str
    parts: list[Part] = field(default_factory=list)
    database: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    not_copied: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {"dest": self.dest, "parts": [asdict(p) for p in self.parts], "database": self.database,
                "notes": self.notes, "not_copied": self.not_copied, "bytes": self.total_bytes,
                "files": sum(p.files for p in self.parts), "seconds": round(self.seconds, 3)}


def backup(settings: Settings, dest: Path, *, with_caches: bool = False, wait_s: float = 0.0) -> BackupReport:
    """Write a backup of the data directory into ``dest`` (absent or an empty directory). JobRunning when a build,
    train or encoder fit still holds the jobs lock after ``wait_s`` seconds; RecsysError for a refused ``dest`` or a
    failed copy, with nothing left at ``dest`` or beside it."""
    home = Path(settings.home).absolute()
    dest = Path(os.path.abspath(dest))
    _refuse_dest(home, dest)
    if not home.is_dir():
        raise RecsysError(f"nothing to back up: the data directory {home} does not exist (RECSYS_HOME names it)")
    started = time.monotonic()
    report = BackupReport(dest=str(dest))
    # An existing empty DEST (a mount point of another disk, a directory made for the service user) is written
    # inside, on its own disk, and filled at the end with BACKUP.json last; a new one is written beside and renamed.
    inside = dest.is_dir()
    tmp = dest / f".tmp-{os.getpid()}" if inside else dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    with _locks(home, wait_s):
        try:
            tmp.mkdir(mode=0o700)
            report.database = _database(settings, tmp, report)
            _artifacts(settings, home, tmp, report, with_caches)
            report.seconds = time.monotonic() - started
            _write_manifest(tmp, report, with_caches)
            fsync_dir(tmp)
            _into_place(tmp, dest, inside)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            for entry in list(dest.iterdir()) if inside else []:  # DEST was empty: what is in it is this run's
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise RecsysError(f"the backup failed ({e.strerror or e}{': ' + str(e.filename) if e.filename else ''})"
                                  f"; nothing was kept at {dest}: fix it (space, permissions) and run it again") from e
            raise
    report.seconds = time.monotonic() - started
    return report


def _into_place(tmp: Path, dest: Path, inside: bool) -> None:
    """The finished backup at ``dest``: renamed there, or (``inside`` an existing empty DEST) its entries moved up,
    ``BACKUP.json`` last."""
    if not inside:
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name == MANIFEST_FILE):
        os.replace(entry, dest / entry.name)
    fsync_dir(dest)
    tmp.rmdir()


def _refuse_dest(home: Path, dest: Path) -> None:
    """DEST must be new or an empty directory, and outside the data directory (a backup must not back up itself)."""
    real_home, real_dest = Path(os.path.realpath(home)), Path(os.path.realpath(dest))
    if real_dest == real_home or real_dest.is_relative_to(real_home):
        raise RecsysError(f"{dest} is inside the data directory {home}: pick a destination outside it (ideally "
                          "on another disk); nothing was written")
    if dest.is_dir() and not any(dest.iterdir()):
        return
    if dest.exists() or dest.is_symlink():
        raise RecsysError(f"{dest} exists and is not an empty directory: pick a new path (the backup never "
                          "overwrites); nothing was written")
    if not dest.parent.is_dir():
        raise RecsysError(f"{dest.parent} does not exist: create it, or pick another destination; nothing was "
                          "written")


@contextlib.contextmanager
def _locks(home: Path, wait_s: float) -> Iterator[None]:
    """The jobs lock (waited for ``wait_s``), then the index's changes and build locks and the rankers' save lock."""
    from filelock import FileLock, Timeout

    from recsys.index.locks import build_lock

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(FileLock(str(home / JOBS_LOCK), timeout=wait_s))
        except Timeout:  # an OSError too: first
            waited = f" after {wait_s:g} s" if wait_s > 0 else ""
            raise JobRunning(f"a job (recsys build, train or encoder fit) is running in {home}{waited}: no backup "
                             "was written; run `recsys backup` again after it finishes, or pass --wait SECONDS"
                             ) from None
        except OSError as e:
            raise RecsysError(f"cannot take the jobs lock {home / JOBS_LOCK} ({e.strerror or e}): no backup was "
                              "written") from e
        wait = max(wait_s, PUBLISH_WAIT_S)
        held = [(home / "index", "changes.lock", "the server is publishing item writes to the index"),
                (home / "index", "build.lock", "an index build or rollback is switching generations"),
                (home / "rankers", SAVE_LOCK, "a ranker rollback is switching rankers")]
        for root, name, doing in held:
            if not root.is_dir():
                continue
            try:
                stack.enter_context(build_lock(root, name, timeout=wait))
            except Timeout:
                raise JobRunning(f"{doing} ({root / name} still held after {wait:g} s): no backup was written; "
                                 "run `recsys backup` again") from None
        yield


def _database(settings: Settings, tmp: Path, report: BackupReport) -> dict[str, Any]:
    """The store: a SQLite file copied whole into ``recsys.db``; a PostgreSQL one named with its pg_dump line."""
    from recsys.store.media_roots import database_file

    url = settings.database_url
    if url is not None and not url.startswith("sqlite:"):
        return _postgres(url, report)
    src = database_file(settings)
    if not src.is_file():
        raise RecsysError(f"no store at {src}: nothing to back up (run `recsys import` or `recsys demo` first)")
    dst = tmp / "recsys.db"
    _sqlite_copy(src, dst)
    os.chmod(dst, 0o600)  # users, events and API key hashes
    digest, size = _sha256(dst), dst.stat().st_size
    report.parts.append(Part("database", "recsys.db", size, 1))
    if url is not None:
        report.notes.append(f"RECSYS_DATABASE_URL names {src}: the backup's copy is its recsys.db; unset "
                            "RECSYS_DATABASE_URL when serving the backup")
    return {"kind": "sqlite", "source": str(src), "file": "recsys.db", "bytes": size, "sha256": digest,
            "schema_revision": _revision(dst)}


def _sqlite_copy(src: Path, dst: Path) -> None:
    """One SQLite database copied whole in one backup step (one read snapshot, never restarted by writers); the
    copy is fsynced and has no side files once closed."""
    source = sqlite3.connect(str(src), timeout=30)  # read-only URIs fail on a WAL file without -shm
    try:
        target = sqlite3.connect(str(dst))
        try:
            source.backup(target, pages=-1)
        finally:
            target.close()
    except sqlite3.Error as e:
        raise RecsysError(f"cannot copy the SQLite database {src} ({e}): no backup was written") from e
    finally:
        source.close()
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())


def _revision(db: Path) -> str | None:
    with contextlib.suppress(sqlite3.Error):
        con = sqlite3.connect(str(db))
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            con.close()
        return str(row[0]) if row else None
    return None


def _postgres(url: str, report: BackupReport) -> dict[str, Any]:
    """No copy: the pg_dump command for this database (its password never shown: pg_dump reads PGPASSWORD or
    ~/.pgpass), said in the notes."""
    import shlex

    from sqlalchemy.engine import make_url

    u = make_url(url)
    args = ["pg_dump", "--format=custom", f"--host={u.host or 'localhost'}", f"--port={u.port or 5432}"]
    args += [f"--username={u.username}"] if u.username else []
    args += [f"--dbname={u.database or ''}", f"--file={report.dest}.pgdump"]
    command = " ".join(shlex.quote(a) for a in args)
    report.notes.append(f"the database is PostgreSQL ({u.host}:{u.port or 5432}/{u.database}), not in the data "
                        f"directory, and was not copied: back it up with `{command}` (the password from PGPASSWORD "
                        "or ~/.pgpass), taken close to this backup so events and artifacts match")
    return {"kind": "postgresql", "host": u.host, "port": u.port or 5432, "database": u.database,
            "copied": False, "pg_dump": command}


def _artifacts(settings: Settings, home: Path, tmp: Path, report: BackupReport, with_caches: bool) -> None:
    """Copy what the server needs at start, as one consistent set (the caller holds the locks)."""
    ids: set[str] = set()
    index = _index_paths(home, ids)
    rankers = _ranker_paths(settings, home, ids)
    heads, vectors = _encoder_paths(home, ids)
    wanted = [("index", index), ("rankers", rankers), ("encoders", heads), ("vectors", vectors),
              ("secrets", ["secrets"]), ("presets", ["presets"]), ("media roots", ["imported_media_roots.json"])]
    exp = settings.experiments.file
    if exp is not None and Path(os.path.realpath(exp)).is_relative_to(os.path.realpath(home)):
        wanted.append(("experiments", [str(Path(os.path.realpath(exp)).relative_to(os.path.realpath(home)))]))
    elif exp is not None:
        report.notes.append(f"the experiments file {exp} is outside the data directory and was not copied")
    if with_caches:
        caches = ["cache/features", *(f"cache/vectors/{_safe(i)}.db" for i in sorted(ids)), "onnx"]
        wanted.append(("caches", caches))
    for name, rels in wanted:
        part = Part(name, rels[0].split("/")[0] if rels else name)
        for rel in rels:
            n, size = _copy(home / rel, tmp / rel)
            part.files, part.bytes = part.files + n, part.bytes + size
        if part.files:
            report.parts.append(part)
    kept = {"recsys.db", "index", "rankers", "encoders", "vectors", "secrets", "presets", "imported_media_roots.json",
            *(["cache", "onnx"] if with_caches else [])}
    report.not_copied = sorted(p.name + ("/" if p.is_dir() else "") for p in home.iterdir()
                               if p.name not in kept and not p.name.endswith(_SKIP_SUFFIXES))
    if (home / "secrets").is_dir():
        report.notes.append("the backup holds secrets (secrets/, and API key hashes in the database): keep it as "
                            "private as the data directory")
    report.notes.append("item images are not copied: items record their paths, and the images stay there (back "
                        "them up separately)")


def _index_paths(home: Path, ids: set[str]) -> list[str]:
    """The served generation, the one PENDING names, and their pointers; the encoder ids they name into ``ids``."""
    from recsys.index.layout import current_id
    from recsys.index.pairing import pending_id

    root = home / "index"
    if not root.is_dir():
        return []
    out = []
    for pointer, gid in (("CURRENT", current_id(root)), ("PENDING", pending_id(root))):
        if gid is None:
            continue
        gen = root / "generations" / gid
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            ids.add(str(json.loads((gen / "manifest.json").read_text(encoding="utf-8"))["encoder_id"]))
        out += [f"index/{pointer}", f"index/generations/{gid}"]
    return out


def _ranker_paths(settings: Settings, home: Path, ids: set[str]) -> list[str]:
    """The current ranker and those experiments' variants name, with CURRENT; their encoder ids into ``ids``.
    Read from the manifests here: the ranking package loads torch (seconds) for what is a few JSON files."""
    from recsys.index.layout import current_id
    from recsys.prune import experiment_rankers

    root = home / "rankers"
    if not root.is_dir():
        return []
    found: dict[str, str | None] = {}  # complete generation (its manifest readable) -> its encoder id
    for d in sorted(root.iterdir()):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if d.is_dir() and not d.name.startswith("."):
                eid = json.loads((d / "manifest.json").read_text(encoding="utf-8")).get("encoder_id")
                found[d.name] = str(eid) if eid else None
    cur = current_id(root)
    versions = [v for v in dict.fromkeys([cur, *experiment_rankers(settings, list(found))])
                if v is not None and v in found]
    ids.update(eid for v in versions if (eid := found[v]))
    return ["rankers/CURRENT", *(f"rankers/{v}" for v in versions)] if versions else []


def _encoder_paths(home: Path, ids: set[str]) -> tuple[list[str], list[str]]:
    """(heads and CURRENT pointers, vector snapshots) of the encoder ids, with each preset's current heads."""
    root = home / "encoders"
    heads: list[str] = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        pointer = d / "CURRENT"
        if d.is_dir() and pointer.is_file():
            heads.append(f"encoders/{d.name}/CURRENT")
            with contextlib.suppress(OSError, UnicodeDecodeError):
                if version := pointer.read_text(encoding="utf-8").strip():
                    ids.add(f"{d.name}@{version}")
    for eid in sorted(ids):
        preset, _, version = eid.rpartition("@")
        if preset and (root / preset / version / "manifest.json").is_file():
            heads.append(f"encoders/{preset}/{version}")
    return heads, [f"vectors/{_safe(i)}" for i in sorted(ids) if (home / "vectors" / _safe(i)).is_dir()]


def _copy(src: Path, dst: Path) -> tuple[int, int]:
    """Copy a file or a tree (modes kept, links followed: a backup holds data, not pointers); (files, bytes).
    Nothing when ``src`` is missing."""
    if src.is_file():
        return 1, _copy_file(src, dst)
    if not src.is_dir():
        return 0, 0
    files = size = 0
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copymode(src, dst)  # secrets/ stays 0700
    for entry in sorted(src.iterdir()):
        if entry.name.endswith(_SKIP_SUFFIXES) or entry.name.startswith((".tmp", ".export")):
            continue
        n, b = _copy(entry, dst / entry.name)
        files, size = files + n, size + b
    fsync_dir(dst)
    return files, size


def _copy_file(src: Path, dst: Path) -> int:
    """One file, fsynced, its mode kept; a SQLite database (a cache) through SQLite, whole. Its size."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".db":
        _sqlite_copy(src, dst)
    else:
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
    shutil.copymode(src, dst)
    return dst.stat().st_size


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(tmp: Path, report: BackupReport, with_caches: bool) -> None:
    """``BACKUP.json``, written last: a directory without it is no complete backup."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        recsys_version = version("recsys")
    except PackageNotFoundError:  # a source tree that was not installed
        recsys_version = None
    body = {"recsys_version": recsys_version, "created_at": datetime.now(UTC).isoformat(),
            "schema_revision": report.database.get("schema_revision"), "with_caches": with_caches,
            **{k: v for k, v in report.to_dict().items() if k != "dest"}}
    path = tmp / MANIFEST_FILE
    with open(path, "x", encoding="utf-8") as f:
        f.write(json.dumps(body, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
