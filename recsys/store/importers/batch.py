"""Batching glue shared by every importer: buffer records, flush them in bulk, collect per-row errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from recsys.store.importers.readers import BadLine, Note, Read
from recsys.store.importers.records import EventRecord, ItemRecord, UserRecord, event_digest
from recsys.store.importers.repeats import FirstUses, Occurrences, SpillingMap
from recsys.store.importers.report import ImportReport
from recsys.store.importers.writer import insert_events, item_states, stored_otherwise, upsert_items, upsert_users

T = TypeVar("T")
Progress = Callable[[str, int], None]
"""Called with (stage, rows done so far)."""


def parse_rows(
    rows: Iterable[Read],
    parse: Callable[[dict[str, Any]], T | None],
    report: ImportReport,
    table: str,
    file: Path,
) -> Iterator[tuple[int, T]]:
    """Apply ``parse`` to each row; a ValueError skips the row and records why. ``None`` means "skip silently"."""
    for row in rows:
        if isinstance(row, Note):
            report.notes.append(f"{file}:{row.line}: {row.text}")
            continue
        report.counts(table).read += 1
        if isinstance(row, BadLine):
            report.skip(table, file, row.line, row.reason)
            continue
        line, rec = row
        try:
            out = parse(rec)
        except ValueError as e:
            report.skip(table, file, line, str(e))
            continue
        if out is not None:
            yield line, out


@dataclass
class _Deleted:
    """A file's stored events on deleted items: the first one's line, how many, a few of the items' ids."""
    line: int
    count: int = 0
    ids: list[str] = field(default_factory=list)
    more: bool = False


def _content(rec: EventRecord) -> str:
    """What makes two rows with one client id the same event (user and id are the key)."""
    return event_digest("ev", (rec.item_id, rec.type, rec.value, rec.ts.isoformat(), rec.recommendation_id,
                               rec.position))


class Writer:
    """Buffers records per table and writes them in bulk batches within one transaction."""

    def __init__(self, session: Session, report: ImportReport, batch_size: int = 5000,
                 progress: Progress | None = None) -> None:
        self.session, self.report, self.batch_size, self.progress = session, report, batch_size, progress
        self._items: list[ItemRecord] = []
        self._users: list[UserRecord] = []
        self._events: list[tuple[Path, int, EventRecord]] = []
        self._done: dict[str, int] = {}
        self._repeats = Occurrences()
        self._ids = FirstUses()
        self._item_ids, self._user_ids = SpillingMap(), SpillingMap()  # repeated ids over the file, not a batch
        self._deleted: dict[Path, _Deleted] = {}

    def _tick(self, stage: str, n: int) -> None:
        self._done[stage] = self._done.get(stage, 0) + n
        if self.progress:
            self.progress(stage, self._done[stage])

    def item(self, rec: ItemRecord) -> None:
        self._items.append(rec)
        if len(self._items) >= self.batch_size:
            self.flush_items()

    def user(self, rec: UserRecord) -> None:
        self._users.append(rec)
        if len(self._users) >= self.batch_size:
            self.flush_users()

    def event(self, file: Path, line: int, rec: EventRecord) -> None:
        self._events.append((file, line, rec))
        if len(self._events) >= self.batch_size:
            self.flush_events()

    def flush_items(self) -> None:
        if self._items:
            upsert_items(self.session, self._items, self.report.counts("items"), self._item_ids)
            self._tick("items", len(self._items))
            self._items = []

    def flush_users(self) -> None:
        if self._users:
            upsert_users(self.session, self._users, self.report.counts("users"), self._user_ids)
            self._tick("users", len(self._users))
            self._users = []

    def flush_events(self) -> None:
        if not self._events:
            return
        counts = self.report.counts("events")
        events = self._one_event_per_id()
        self._number_repeats()
        states = item_states(self.session, (r.item_id for _, _, r in events))  # unknown and deleted items
        good = []
        for file, line, rec in events:
            if rec.item_id not in states:
                self.report.skip_unknown_item("events", file, line, rec.item_id)
            else:
                good.append((file, line, rec))
        results = insert_events(self.session, [rec for _, _, rec in good])
        counts.inserted += sum(1 for r in results if r is not None)
        counts.unchanged += sum(1 for r in results if r is None) - self._stored_otherwise(good, results)
        for (file, line, rec), stored in zip(good, results, strict=True):
            if stored is not None and states[rec.item_id]:  # as POST /v1/events warns of each
                counts.deleted_items += 1
                seen = self._deleted.setdefault(file, _Deleted(line))
                seen.count += 1
                if rec.item_id not in seen.ids:
                    seen.more = seen.more or len(seen.ids) == 5
                    seen.ids += [] if seen.more else [rec.item_id]
        self._tick("events", len(self._events))
        self._events = []

    def _one_event_per_id(self) -> list[tuple[Path, int, EventRecord]]:
        """The buffered events less those whose client id an earlier row of their file gave to another event, each
        listed as skipped: the store would keep the first and count this one "unchanged", a record lost without a
        word. An identical repeat stays (stored once, counted unchanged); ids are per user, as the store keys them."""
        given = [(f, n, r) for f, n, r in self._events if r.repeat_of is None and r.client_event_id is not None]
        if not given:
            return self._events
        digests = [_content(r) for _, _, r in given]
        firsts = self._ids.first([(event_digest("id", (str(f), r.user_id, r.client_event_id)), n, d)
                                  for (f, n, r), d in zip(given, digests, strict=True)])
        clashes: set[tuple[Path, int]] = set()
        for (file, line, rec), own, (first, digest) in zip(given, digests, firsts, strict=True):
            if digest != own:
                clashes.add((file, line))
                self.report.skip("events", file, line, f"event_id {rec.client_event_id!r} is already used at line "
                                 f"{first} for another event of user {rec.user_id!r}; give each event its own id "
                                 "(this row was not imported)")
        return [e for e in self._events if (e[0], e[1]) not in clashes]

    def _stored_otherwise(self, events: list[tuple[Path, int, EventRecord]], results: list[int | None]) -> int:
        """List as skipped each of ``events`` that was not stored because its user's client id is stored for another
        event (an id an earlier import gave, restarted per export, day or session): the store keeps the first one,
        and "unchanged" would lose this one without a word. Returns how many. A derived id (no client id given) is
        derived from the row's content, so its stored event is this one."""
        again = [(e, i) for e, i in zip(events, results, strict=True) if i is None and e[2].repeat_of is None]
        others = stored_otherwise(self.session, [rec for (_, _, rec), _ in again]) if again else []
        n = 0
        for ((file, line, rec), _), other in zip(again, others, strict=True):
            if other is not None:
                n += 1
                self.report.skip("events", file, line, f"event_id {rec.client_event_id!r} is already stored for "
                                 f"another event of user {rec.user_id!r} ({other}); an import never rewrites a "
                                 "stored event: give each event its own id (this row was not imported)")
        return n

    def _number_repeats(self) -> None:
        """Derive the client id of each buffered event without one from its occurrence over the whole file (rows
        skipped for an unknown item count too, as they always have: the ids of a re-import stay the same)."""
        repeats = [rec for _, _, rec in self._events if rec.repeat_of is not None]
        for rec, n in zip(repeats, self._repeats.number([r.repeat_of or "" for r in repeats]), strict=True):
            rec.client_event_id = f"{rec.repeat_of}:{n}"

    def finish(self) -> None:
        """The report's notes on what was stored but will not show: events on deleted items, per file."""
        for file, d in self._deleted.items():
            self.report.notes.append(
                f"{file}:{d.line}: {d.count:,} stored event(s) name deleted items ({', '.join(map(repr, d.ids))}"
                f"{', ...' if d.more else ''}): they are kept in the users' histories, the items are "
                "never shown (importing an item with its title, or a PUT of it, brings it back)")
        self.report.note_unlisted()

    def close(self) -> None:
        self._repeats.close()
        self._ids.close()
        self._item_ids.close()
        self._user_ids.close()

    def flush(self) -> None:
        self.flush_items()
        self.flush_users()
        self.flush_events()
