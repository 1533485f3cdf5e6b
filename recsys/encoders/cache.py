"""Vector caches under ``settings.home/cache``: one SQLite file per namespace, key -> float32 vector.

Two kinds of namespace use it:

- tower features (``features/<towers id>/image|text``): keyed by media file identity or text digest, so ``encoder
  fit`` and ``embed`` never decode or run a tower twice for the same input;
- item vectors (``vectors/<encoder id>``): keyed by the item's content hash, its media identities and the text
  configuration, so a re-run re-encodes only new or changed items (DESIGN.md decision 5).

SQLite gives atomic batches and safe concurrent readers for free; values are raw float32 bytes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from recsys.config import Settings
from recsys.encoders.media import local_path
from recsys.errors import EncoderStorageError
from recsys.store.sqlite import enable_wal

log = logging.getLogger(__name__)


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def media_identity(uri: str, where: str | None = None) -> str:
    """A file's identity for caching: recorded path, size and modification time (a changed file is re-read; a
    ``file://`` URL is its file's, as the loader reads it). ``where``: the file read instead of the recorded one (by
    :class:`~recsys.encoders.media.MediaFinder`, in a moved data directory); the identity keeps the recorded path, so
    a moved home keeps its cached vectors."""
    try:
        st = os.stat(local_path(where or uri))
    except OSError:
        return f"{uri}|missing"
    return f"{uri}|{st.st_size}|{st.st_mtime_ns}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)


_CORRUPT = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_HINTS = {  # what to do, by SQLite's primary error code
    sqlite3.SQLITE_FULL: "free space on that disk",
    sqlite3.SQLITE_IOERR: "free space on that disk (an I/O error most often means a full one) or check the disk",
    sqlite3.SQLITE_READONLY: "make RECSYS_HOME writable",
    sqlite3.SQLITE_CANTOPEN: "make sure RECSYS_HOME is writable and the open-files limit (ulimit -n) is not reached",
    sqlite3.SQLITE_PERM: "make RECSYS_HOME writable",
    sqlite3.SQLITE_BUSY: "let the other process using it (an embed or fit) finish",
    sqlite3.SQLITE_LOCKED: "let the other process using it (an embed or fit) finish",
}
_ERRNO_HINTS = {  # the same, by the errno of an OSError
    errno.ENOSPC: _HINTS[sqlite3.SQLITE_FULL], errno.EDQUOT: "free space (the disk quota is used up)",
    errno.EROFS: _HINTS[sqlite3.SQLITE_READONLY], errno.EACCES: _HINTS[sqlite3.SQLITE_PERM],
    errno.EPERM: _HINTS[sqlite3.SQLITE_PERM], errno.EIO: _HINTS[sqlite3.SQLITE_IOERR],
    errno.EMFILE: "raise the open-files limit (ulimit -n)",
    errno.ENFILE: "raise the system's open-files limit or stop other processes",
}


def is_corrupt(e: sqlite3.Error) -> bool:
    """Whether ``e`` says the file is not (or no longer) a database. A full disk, a read-only directory, an I/O error
    or too many open files say nothing about the file, and SQLite reports them as ``OperationalError``, a subclass
    of the ``DatabaseError`` that corruption raises: only the error code tells them apart."""
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _CORRUPT  # an extended code (SQLITE_CORRUPT_INDEX...) keeps the primary in its low byte
    return any(w in str(e).lower() for w in ("file is not a database", "malformed"))


def disk_problem(path: Path, e: BaseException) -> tuple[str, str]:
    """(the cause with the free space near ``path``, what to do) for ``e``, an OSError or a sqlite3.Error met
    writing derived data under the data directory."""
    code = getattr(e, "sqlite_errorcode", None)
    hint = _HINTS.get(code & 0xFF) if isinstance(code, int) else _ERRNO_HINTS.get(getattr(e, "errno", None) or -1)
    free = ""
    for d in (path, *path.parents):  # the nearest directory that exists (a failed mkdir made none)
        if d.is_dir():
            with contextlib.suppress(OSError):
                free = f"; {shutil.disk_usage(d).free / 2**20:,.0f} MB free there"
            if not os.access(d, os.W_OK):  # SQLite says only "unable to open database file"
                free += f"; {d} is read-only"
                hint = _HINTS[sqlite3.SQLITE_READONLY]
            break
    cause = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return f"{cause}{free}", hint or "check the disk and RECSYS_HOME"


def storage_error(path: Path, doing: str, e: BaseException) -> EncoderStorageError:
    """``e`` (sqlite3.Error or OSError) met while ``doing`` the cache at ``path``, said with the file, the cause and
    what to do; the file is left where it is."""
    if isinstance(e, sqlite3.Error) and is_corrupt(e):
        return EncoderStorageError(f"the cache {path} is damaged ({e}); delete it (derived data: its vectors are "
                                   "computed again) and rerun")
    cause, hint = disk_problem(path, e)
    return EncoderStorageError(f"cannot {doing} the cache {path} ({cause}); it was left as it is, with every vector "
                               f"computed so far: {hint}, then rerun (only what is missing is computed)")


class VectorCache:
    """A persistent map from string keys to fixed-length float32 vectors.

    A file that is not a database is set aside and started anew (derived data); any other failure to open, read or
    write (disk full, read-only, I/O error) raises :class:`~recsys.errors.EncoderStorageError` and touches nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._connect(path)
            except sqlite3.DatabaseError as e:
                if not is_corrupt(e):
                    raise
                self._set_aside(e)
                self._db = self._connect(path)
        except (sqlite3.Error, OSError) as e:
            raise storage_error(path, "open", e) from e

    def _set_aside(self, e: sqlite3.Error) -> None:
        path = self.path
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        log.warning("cache %s is damaged (%s); moved to %s and started anew (its vectors are computed again; "
                    "delete the moved file when done)", path, e, aside.name)
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")

    @contextlib.contextmanager
    def _io(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise storage_error(self.path, doing, e) from e

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        try:
            enable_wal(db.execute)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS v (k TEXT PRIMARY KEY, dim INTEGER, data BLOB)")
            db.execute("SELECT k, data FROM v LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @classmethod
    def open(cls, settings: Settings, *namespace: str) -> VectorCache:
        return cls(settings.home.joinpath("cache", *[_safe(n) for n in namespace[:-1]], _safe(namespace[-1]) + ".db"))

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, np.ndarray] = {}
        with self._io("read"):
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT k, data FROM v WHERE k IN ({','.join('?' * len(chunk))})"
                for k, data in self._db.execute(q, chunk):
                    v = np.frombuffer(data, dtype=np.float32)
                    if np.isfinite(v).all():  # a damaged entry (NaN, inf) is a miss: encoded again, not indexed as is
                        out[k] = v.copy()
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """One transaction: on a failure (a full disk) none of ``items`` is kept and every earlier batch is."""
        rows = [(k, int(v.shape[-1]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
        with self._io("write to"), self._db:
            self._db.executemany("INSERT OR REPLACE INTO v (k, dim, data) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._io("read"):
            return int(self._db.execute("SELECT COUNT(*) FROM v").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        with self._io("read"):
            return self._db.execute("SELECT 1 FROM v WHERE k = ?", (key,)).fetchone() is not None

    def clear(self) -> None:
        with self._io("write to"), self._db:
            self._db.execute("DELETE FROM v")

    def close(self) -> None:
        self._db.close()
