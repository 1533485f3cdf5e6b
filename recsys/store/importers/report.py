"""What an import did: counts per table and the rows it skipped, each with file, line and reason (the first
:data:`MAX_LISTED` of them: a file of millions of bad rows would otherwise fill the memory and the report)."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recsys.errors import ImportFailed

UNKNOWN_ITEM = "unknown item id"
MAX_LISTED = 1000
"""Skipped rows listed in a report; the counts per table cover every one."""


@dataclass(frozen=True)
class BadRow:
    file: str
    line: int
    reason: str


@dataclass
class TableCounts:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    repeated: int = 0
    """Rows whose id an earlier row of the same import already gave: the last one is stored, and the id is counted
    once above (inserted, updated or unchanged: what the file did to it in all)."""
    unknown_items: int = 0
    """Skipped rows (of ``skipped``) that name an item the store does not hold: well-formed, so not counted as
    malformed; the items are to be imported first."""
    deleted_items: int = 0
    """Events stored (of ``inserted``) that name a deleted item: kept in the user's history, the item never shown."""


@dataclass
class ImportReport:
    source: str
    tables: dict[str, TableCounts] = field(default_factory=dict)
    bad_rows: list[BadRow] = field(default_factory=list)
    """The first :data:`MAX_LISTED` skipped rows."""
    bad_rows_total: int = 0
    """Every skipped row, listed or not."""
    notes: list[str] = field(default_factory=list)
    """What to say of a file that is not a bad row ("path:line: text")."""
    written_to: Path | None = None
    """Where the report was written (None: not yet, or it could not be: a note says why)."""
    _first: dict[str, BadRow] = field(default_factory=dict, repr=False)
    _first_malformed: dict[str, BadRow] = field(default_factory=dict, repr=False)
    _skipped: Counter[str] = field(default_factory=Counter, repr=False)
    _listed: Counter[str] = field(default_factory=Counter, repr=False)

    def counts(self, table: str) -> TableCounts:
        return self.tables.setdefault(table, TableCounts())

    def skip(self, table: str, file: str | Path, line: int, reason: str) -> None:
        self.counts(table).skipped += 1
        self.bad_rows_total += 1
        bad, name = BadRow(str(file), line, reason), str(file)
        self._first.setdefault(name, bad)
        if not reason.startswith(UNKNOWN_ITEM):
            self._first_malformed.setdefault(name, bad)
        self._skipped[name] += 1
        if len(self.bad_rows) < MAX_LISTED:
            self.bad_rows.append(bad)
            self._listed[name] += 1

    def skip_unknown_item(self, table: str, file: str | Path, line: int, item_id: str) -> None:
        self.skip(table, file, line, f"{UNKNOWN_ITEM} {item_id!r}; import the items first")
        self.counts(table).unknown_items += 1

    def check_garbled(self, table: str, file: str | Path, max_bad_fraction: float, *, empty: str = "",
                      expects: str = "") -> None:
        """A file whose rows are mostly bad (from 20 rows on) or all bad is not "a few bad rows": refuse it whole;
        so is one without any record (``empty`` says what it held instead, ``expects`` what it should hold), which
        is more likely the wrong file or an export that failed than a change of nothing."""
        c = self.counts(table)
        if c.read == 0:
            held = f" ({empty})" if empty else ""
            raise ImportFailed(f"{file}: the file holds no records{held}; nothing was imported. "
                               f"{expects or 'Check that this is the right file.'}")
        first = self._first.get(str(file))
        where = f"; first at line {first.line}: {first.reason}" if first else ""
        if c.skipped == c.read:  # nothing in it is usable
            raise ImportFailed(f"{file}: none of its {c.read} rows could be imported{where}; nothing was imported")
        malformed = c.skipped - c.unknown_items  # rows naming items not imported yet are well-formed
        if c.read >= 20 and malformed > max_bad_fraction * c.read:
            first = self._first_malformed[str(file)]
            raise ImportFailed(
                f"{file}: {malformed} of {c.read} rows are malformed; first at line {first.line}: {first.reason}. "
                "The file looks garbled or is not in the expected format; nothing was imported. Fix the file or "
                "check the --format / column mapping."
            )

    def note_unlisted(self) -> None:
        """Say, per file, how many of its skipped rows the report does not list."""
        for name, n in self._skipped.items():
            if n > self._listed[name]:
                self.notes.append(f"{name}: {n:,} rows were skipped; the report lists the first {self._listed[name]:,} "
                                  "(the counts per table cover them all)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tables": {k: asdict(v) for k, v in self.tables.items()},
            "bad_rows": [asdict(b) for b in self.bad_rows],
            "bad_rows_total": self.bad_rows_total,
            "notes": self.notes,
        }

    def write(self, path: Path) -> Path:
        """Write the report to ``path`` whole or not at all (a full disk leaves no half report); OSError if not."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        self.written_to = path
        return path
