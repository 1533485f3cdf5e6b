"""What one import remembers of a whole file's rows, with memory bounded by a batch.

An event row without a client id gets an id derived from its content and its occurrence number (1 for the first
such row of the file, 2 for the next identical one...), so identical rows stay separate events and a re-import of
the file derives the same ids (:class:`Occurrences`); a row whose client id an earlier row gave to another event is
found by the first use of each id (:class:`FirstUses`); an item or user id that an earlier batch gave is a repeated
id (:func:`recsys.store.importers.writer.upsert_items`). Each needs a value per distinct key seen so far: kept in a
dict for a small file, and past :data:`IN_MEMORY` keys in a private temporary SQLite database (on disk under the
temporary directory, deleted when closed or when the process dies), so a file of millions of rows holds only the
current batch in memory (:class:`SpillingMap`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from recsys.errors import DiskFull

IN_MEMORY = 100_000
"""Distinct keys kept in a dict (about 200 bytes each: 20 MB) before they move to the temporary database."""

_CHUNK = 500  # keys per IN (...) lookup, under SQLite's bound-parameter limit


@contextmanager
def _disk_full() -> Iterator[None]:
    """A full temporary directory as DiskFull (saying which), not sqlite3's bare error from an import's depths."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if "database or disk is full" not in str(e):
            raise
        raise DiskFull.sqlite(None, str(e)) from e


class SpillingMap:
    """Text keys to JSON-able values over one import: a dict, then past :data:`IN_MEMORY` keys a temporary table."""

    def __init__(self) -> None:
        self._mem: dict[str, Any] = {}
        self._db: sqlite3.Connection | None = None

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The stored values of those of ``keys`` that have one."""
        if self._db is None:
            return {k: self._mem[k] for k in keys if k in self._mem}
        distinct = list(dict.fromkeys(keys))
        out: dict[str, Any] = {}
        for i in range(0, len(distinct), _CHUNK):
            part = distinct[i : i + _CHUNK]
            rows = self._db.execute(f"SELECT k, v FROM kept WHERE k IN ({','.join('?' * len(part))})", part)
            out.update((k, json.loads(v)) for k, v in rows)
        return out

    def put_many(self, values: Mapping[str, Any]) -> None:
        """Store (or replace) ``values``."""
        if self._db is None:
            self._mem.update(values)
            if len(self._mem) > IN_MEMORY:
                self._spill()
            return
        with _disk_full():
            self._db.execute("BEGIN")  # one transaction per batch, not one per row
            self._db.executemany("INSERT INTO kept VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                                 ((k, json.dumps(v)) for k, v in values.items()))
            self._db.execute("COMMIT")

    def _spill(self) -> None:
        # "" opens a private on-disk database that SQLite unlinks itself: nothing is left behind, even on kill -9
        db = sqlite3.connect("", isolation_level=None)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-16000")  # 16 MB of pages at most; the rest stays on disk
        db.execute("CREATE TABLE kept (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID")
        self._db, mem, self._mem = db, self._mem, {}
        self.put_many(mem)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._mem = {}


class Occurrences:
    """Counts per key (an event's content digest) over one import, in the order the rows come."""

    def __init__(self) -> None:
        self._counts = SpillingMap()

    def number(self, keys: Sequence[str]) -> list[int]:
        """The occurrence number of each of ``keys`` (a batch, in file order), counting every earlier batch."""
        counts: dict[str, int] = self._counts.get_many(keys)
        out = []
        for k in keys:
            n = counts[k] = counts.get(k, 0) + 1
            out.append(n)
        self._counts.put_many(counts)
        return out

    def close(self) -> None:
        self._counts.close()


class FirstUses:
    """The first row (line, content digest) that gave each key (a client event id) over one import."""

    def __init__(self) -> None:
        self._firsts = SpillingMap()

    def first(self, uses: Sequence[tuple[str, int, str]]) -> list[tuple[int, str]]:
        """For each (key, line, digest) of a batch, in file order, its key's first use: its own when the key is new
        (then remembered)."""
        known = {k: (int(v[0]), str(v[1])) for k, v in self._firsts.get_many([k for k, _, _ in uses]).items()}
        new: dict[str, tuple[int, str]] = {}
        out = []
        for key, line, digest in uses:
            got = known.get(key) or new.get(key)
            if got is None:
                got = new[key] = (line, digest)
            out.append(got)
        self._firsts.put_many(new)
        return out

    def close(self) -> None:
        self._firsts.close()
