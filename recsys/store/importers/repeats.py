"""Occurrence numbers of identical rows across a whole file, with memory bounded by a batch.

An event row without a client id gets an id derived from its content and its occurrence number (1 for the first
such row of the file, 2 for the next identical one...), so identical rows stay separate events and a re-import of
the file derives the same ids. Numbering needs the count of every distinct row seen so far: kept in a dict for a
small file, and past :data:`IN_MEMORY` distinct rows in a private temporary SQLite database (on disk under the
temporary directory, deleted when closed or when the process dies), so a file of millions of rows holds only the
current batch in memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

IN_MEMORY = 100_000
"""Distinct rows counted in a dict (about 200 bytes each: 20 MB) before the counts move to the temporary database."""

_CHUNK = 500  # ids per IN (...) lookup, under SQLite's bound-parameter limit


class Occurrences:
    """Counts per key (an event's content digest) over one import, in the order the rows come."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None

    def number(self, keys: Sequence[str]) -> list[int]:
        """The occurrence number of each of ``keys`` (a batch, in file order), counting every earlier batch."""
        if self._db is None:
            out = []
            for k in keys:
                n = self._counts[k] = self._counts.get(k, 0) + 1
                out.append(n)
            if len(self._counts) > IN_MEMORY:
                self._spill()
            return out
        return self._number_on_disk(keys)

    def _spill(self) -> None:
        # "" opens a private on-disk database that SQLite unlinks itself: nothing is left behind, even on kill -9
        db = sqlite3.connect("", isolation_level=None)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-16000")  # 16 MB of pages at most; the rest stays on disk
        db.execute("CREATE TABLE seen (k TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
        self._db = db
        self._write(self._counts)
        self._counts = {}

    def _number_on_disk(self, keys: Sequence[str]) -> list[int]:
        assert self._db is not None
        distinct = list(dict.fromkeys(keys))
        counts: dict[str, int] = {}
        for i in range(0, len(distinct), _CHUNK):
            part = distinct[i : i + _CHUNK]
            marks = ",".join("?" * len(part))
            counts.update(self._db.execute(f"SELECT k, n FROM seen WHERE k IN ({marks})", part))
        out = []
        for k in keys:
            n = counts[k] = counts.get(k, 0) + 1
            out.append(n)
        self._write(counts)
        return out

    def _write(self, counts: dict[str, int]) -> None:
        assert self._db is not None
        self._db.execute("BEGIN")  # one transaction per batch, not one per row
        self._db.executemany("INSERT INTO seen VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = excluded.n",
                             counts.items())
        self._db.execute("COMMIT")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._counts = {}
