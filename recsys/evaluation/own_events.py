"""``recsys evaluate --test-events FILE --format events``: a shop's own events file, read by the importer itself.

The file is what ``recsys import events`` reads (CSV, TSV, JSON Lines or Parquet by its extension, gzip too;
``user_id``, ``item_id``, ``timestamp``, ``type``, optional ``value`` and ``event_id``), and it is read by that very
code: :func:`recsys.store.importers.generic.import_generic` with a writer that keeps the parsed events instead of
storing them. So the same rows are bad rows, and each event gets the client id an import of the file would give it
(its ``event_id``, or its content digest numbered by occurrence over the file): replaying the file twice, or
importing it after an evaluation, stores nothing twice. Every event type is kept (views and carts are history).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pandas as pd

from recsys.errors import ImportFailed
from recsys.store.importers.batch import Writer
from recsys.store.importers.generic import import_generic
from recsys.store.importers.records import EventRecord
from recsys.store.importers.report import ImportReport

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

COLUMNS = ["user_id", "item_id", "type", "value", "ts", "client_event_id"]


@dataclass(frozen=True)
class ReadOptions:
    """How ``recsys import events`` is told to read the file (``--map``, ``--delimiter``, ``--type``): evaluate
    takes the same words, so a file imported with them is evaluated with them."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    delimiter: str = ","
    event_type: str | None = None

    def given(self) -> bool:
        return bool(self.mapping) or self.delimiter != "," or self.event_type is not None


class _Keeper(Writer):
    """The import's writer without a store: :meth:`flush_events` (the only method that would write) keeps the
    events, after the writer's own steps that decide client ids: a row reusing an earlier row's ``event_id`` for
    another event is a bad row, and rows without one are numbered by occurrence over the whole file."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(cast("Session", None), report)  # never used: nothing here writes
        self.kept: list[EventRecord] = []
        self._kept_ids: set[tuple[str, str]] = set()

    def flush_events(self) -> None:
        events = self._one_event_per_id()
        self._number_repeats()
        for _, _, rec in events:  # an identical repeat of an id is stored once by an import: kept once here too
            key = (rec.user_id, rec.client_event_id or "")
            if rec.client_event_id is None or key not in self._kept_ids:
                self._kept_ids.add(key)
                self.kept.append(rec)
        self._events = []


def read_own_events(path: Path | str, *, max_bad_fraction: float = 0.2,
                    options: ReadOptions | None = None) -> pd.DataFrame:
    """Events (user_id, item_id, type, value, ts, client_event_id) of a generic events file, in file order.

    Bad rows are skipped and logged; a file that ``recsys import events`` would refuse (no such columns, garbled,
    no record) raises :class:`ImportFailed` with the importer's words. Items are not checked here: the evaluation
    drops (and counts) the events on items the store does not know.
    """
    path = Path(path)
    if path.is_dir():
        raise ImportFailed(f"{path} is a directory; --test-events FILE --format events reads one events file (CSV, "
                           "TSV, JSON lines or Parquet, as `recsys import events` does)")
    report = ImportReport(source=f"test-events:{path}")
    keeper = _Keeper(report)
    try:
        opts = options or ReadOptions()
        import_generic(path, "events", keeper, report, max_bad_fraction, mapping=dict(opts.mapping),
                       event_type=opts.event_type, delimiter=opts.delimiter)
    finally:
        keeper.close()
    if report.bad_rows_total:
        first = report.bad_rows[0]
        log.warning("%s: skipped %d bad row(s), first at line %d: %s", path, report.bad_rows_total, first.line,
                    first.reason)
    for note in report.notes:
        log.warning("%s", note)
    df = pd.DataFrame([(r.user_id, r.item_id, r.type, r.value, r.ts, r.client_event_id) for r in keeper.kept],
                      columns=COLUMNS)
    df["ts"] = pd.to_datetime(df["ts"])
    return df
