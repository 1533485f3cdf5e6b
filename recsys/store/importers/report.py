"""What an import did: counts per table and the rows it skipped, each with file, line and reason."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recsys.errors import ImportFailed

UNKNOWN_ITEM = "unknown item id"


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
    """Rows whose id an earlier row of the same batch already gave: the last one is stored."""
    unknown_items: int = 0
    """Skipped rows (of ``skipped``) that name an item the store does not hold: well-formed, so not counted as
    malformed; the items are to be imported first."""


@dataclass
class ImportReport:
    source: str
    tables: dict[str, TableCounts] = field(default_factory=dict)
    bad_rows: list[BadRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What to say of a file that is not a bad row ("path:line: text")."""

    def counts(self, table: str) -> TableCounts:
        return self.tables.setdefault(table, TableCounts())

    def skip(self, table: str, file: str | Path, line: int, reason: str) -> None:
        self.counts(table).skipped += 1
        self.bad_rows.append(BadRow(str(file), line, reason))

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
        first = next((b for b in self.bad_rows if b.file == str(file)), None)
        where = f"; first at line {first.line}: {first.reason}" if first else ""
        if c.skipped == c.read:  # nothing in it is usable
            raise ImportFailed(f"{file}: none of its {c.read} rows could be imported{where}; nothing was imported")
        malformed = c.skipped - c.unknown_items  # rows naming items not imported yet are well-formed
        if c.read >= 20 and malformed > max_bad_fraction * c.read:
            first = next(b for b in self.bad_rows if b.file == str(file) and not b.reason.startswith(UNKNOWN_ITEM))
            raise ImportFailed(
                f"{file}: {malformed} of {c.read} rows are malformed; first at line {first.line}: {first.reason}. "
                "The file looks garbled or is not in the expected format; nothing was imported. Fix the file or "
                "check the --format / column mapping."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tables": {k: asdict(v) for k, v in self.tables.items()},
            "bad_rows": [asdict(b) for b in self.bad_rows],
            "notes": self.notes,
        }

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path
