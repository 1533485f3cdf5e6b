"""Importers: H&M, MovieLens and generic files, each in one transaction so a failure leaves the store as it was."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from recsys.config import Settings, get_settings
from recsys.errors import ImportFailed, StoreBusy, StoreError, StoreUnavailable
from recsys.store.db import Store
from recsys.store.importers.batch import Progress, Writer
from recsys.store.importers.generic import import_generic
from recsys.store.importers.hm import import_hm
from recsys.store.importers.movielens import import_movielens
from recsys.store.importers.report import BadRow, ImportReport
from recsys.store.media_roots import record_media_root

__all__ = ["BadRow", "ImportReport", "run_import"]

SOURCES = ("hm", "movielens", "items", "users", "events")


def run_import(
    store: Store,
    source: str,
    path: Path,
    *,
    settings: Settings | None = None,
    fmt: str = "auto",
    mapping: dict[str, str] | None = None,
    event_type: str | None = None,
    progress: Progress | None = None,
    delimiter: str = ",",
) -> ImportReport:
    """Import ``path`` as ``source`` (hm, movielens, items, users, events); writes a JSON report in the data dir.
    ``delimiter`` is a CSV file's (items, users, events)."""
    settings = settings or get_settings()
    if source not in SOURCES:
        raise ImportFailed(f"unknown source '{source}'; use one of {', '.join(SOURCES)}")
    if not path.exists():
        raise ImportFailed(f"{path}: no such file or directory")
    if source in ("hm", "movielens") and not path.is_dir():
        raise ImportFailed(f"{path}: expected the {source} dataset directory")
    if source not in ("hm", "movielens") and path.is_dir():
        raise ImportFailed(f"{path} is a directory; `recsys import {source}` reads one file (CSV, JSON lines or "
                           "Parquet)")
    report = ImportReport(source=f"{source}:{path}")
    committing = False
    try:
        with store.session() as session:
            writer = Writer(session, report, settings.store.batch_size, progress)
            try:
                limit = settings.store.max_bad_fraction
                if source == "hm":
                    import_hm(path, writer, report, limit)
                elif source == "movielens":
                    import_movielens(path, writer, report, limit)
                else:
                    import_generic(path, source, writer, report, limit, fmt=fmt, mapping=mapping,
                                   event_type=event_type, delimiter=delimiter)
                writer.finish()
            finally:
                writer.close()
            committing = True
    except StoreError as e:  # the store's words (full, down, denied) are any transaction's: say this one's fate
        if committing and type(e) is StoreUnavailable:  # the connection went during COMMIT: it may have been done
            raise
        raise _nothing_imported(e, path) from e
    except (StatementError, TypeError) as e:  # a value the row checks let through: say so, never a traceback
        said = _refused(e)
        if said is None:
            raise  # the store's own trouble (busy, down: the session has said so), or a bug
        if _concurrent(e):  # the file is not at fault: the same ids were written by another import meanwhile
            raise StoreBusy(f"{path}: another writer (an import running at the same time?) changed the same rows "
                            f"while this import ran ({said}); nothing was imported. The file is not at fault: running "
                            "it again is safe") from e
        raise ImportFailed(f"{path}: the database refused a value ({said}); nothing was imported. Please report it "
                           "with the file's offending row: the importer should have skipped that row") from e
    _write_report(report, settings, source)
    if source in ("hm", "movielens", "items"):  # their photos are served from where they lie
        record_media_root(settings, path)
    return report


def _refused(e: Exception) -> str | None:
    """What was wrong with a value the database (or its driver) refused; None for any other error."""
    if isinstance(e, TypeError):  # psycopg serialises JSON itself and raises the bare TypeError
        return str(e) if "JSON serializable" in str(e) else None
    if isinstance(e, DBAPIError) and not isinstance(e, DataError | IntegrityError):
        return None
    said = str(getattr(e, "orig", "") or "").strip()
    return said.splitlines()[0] if said else type(getattr(e, "orig", e)).__name__


def _nothing_imported(e: StoreError, path: Path) -> StoreError:
    """``e`` (its class: code and status) saying that the import's transaction was rolled back."""
    said = copy.copy(e)
    said.message = f"{path}: nothing was imported: {e.message}"
    said.args = (said.message,)
    return said


def _concurrent(e: Exception) -> bool:
    """A unique or foreign key violation: the importer writes each id once and its references first, so another
    writer's rows (inserted or removed meanwhile) are the cause, not a value of the file."""
    state = getattr(getattr(e, "orig", None), "sqlstate", None)
    said = str(getattr(e, "orig", "") or "")
    return isinstance(e, IntegrityError) and (state in ("23505", "23503") or said.startswith(
        ("UNIQUE constraint failed", "FOREIGN KEY constraint failed")))


def _write_report(report: ImportReport, settings: Settings, source: str) -> None:
    """Write the report; the rows are committed by now, so a report that cannot be written (a full disk, a
    read-only directory) is a note on an import that succeeded, never an error that would say it failed."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = settings.home / "reports" / f"import-{source}-{stamp}.json"
    try:
        report.write(target)
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        report.notes.append(f"{target}: the rows were imported (committed), but this report of the import could not "
                            f"be written ({why}); the counts and skipped rows printed with this note are all there "
                            "is of it")
