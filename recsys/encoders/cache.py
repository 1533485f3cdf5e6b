"""Vector caches under ``settings.home/cache``: one SQLite file per namespace, key -> float32 vector.

Two kinds of namespace use it:

- tower features (``features/<towers id>/image|text``): keyed by media file identity or text digest, so ``encoder
  fit`` and ``embed`` never decode or run a tower twice for the same input;
- item vectors (``vectors/<encoder id>``): keyed by the item's content hash, its media identities and the text
  configuration, so a re-run re-encodes only new or changed items (DESIGN.md decision 5).

SQLite gives atomic batches and safe concurrent readers for free; values are raw float32 bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from recsys.config import Settings
from recsys.encoders.media import local_path

log = logging.getLogger(__name__)


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def media_identity(uri: str) -> str:
    """A file's identity for caching: absolute path, size and modification time (a changed file is re-read; a
    ``file://`` URL is its file's, as the loader reads it)."""
    try:
        st = os.stat(local_path(uri))
    except OSError:
        return f"{uri}|missing"
    return f"{uri}|{st.st_size}|{st.st_mtime_ns}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)


class VectorCache:
    """A persistent map from string keys to fixed-length float32 vectors."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = self._connect(path)
        except sqlite3.DatabaseError as e:  # derived data: set the damaged file aside and compute it again
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            log.warning("cache %s is damaged (%s); moved to %s and started anew (its vectors are computed again; "
                        "delete the moved file when done)", path, e, aside.name)
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{path}{suffix}").exists():
                    os.replace(f"{path}{suffix}", f"{aside}{suffix}")
            self._db = self._connect(path)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
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
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT k, data FROM v WHERE k IN ({','.join('?' * len(chunk))})"
            for k, data in self._db.execute(q, chunk):
                v = np.frombuffer(data, dtype=np.float32)
                if np.isfinite(v).all():  # a damaged entry (NaN, inf) is a miss: encoded again, not indexed as is
                    out[k] = v.copy()
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        rows = [(k, int(v.shape[-1]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO v (k, dim, data) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM v").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM v WHERE k = ?", (key,)).fetchone() is not None

    def clear(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM v")

    def close(self) -> None:
        self._db.close()
