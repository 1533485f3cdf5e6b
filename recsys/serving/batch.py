"""Lists for many users written to one file (``recsys recommend-batch``): a nightly e-mail campaign, a cache or CDN
push, a partner feed. Each list comes from :meth:`recsys.service.Recommender.recommend`, the call the API and
``recsys recommend`` make, so the file cannot drift from what is served (ranker, clock, caps, rules, explanations).

The format follows OUT's name. ``.jsonl``: one object per user, each self-contained so a consumer can stream or
split the file: ``user_id``, ``known`` (false: no stored user has the id; it got the trending list the API gives an
unknown user), ``items`` (best first: ``item_id``, ``score``, ``sources``, ``explanation`` with ``explain``), then
``ranker``, ``index_generation`` and ``ranked_at`` (the time the list was ranked as of, ISO 8601 UTC). ``.csv``:
``user_id,rank,item_id,score`` rows. Either may end in ``.gz``. The file is written as a temporary file beside OUT
and renamed in at the end: an interrupted or failed run leaves neither OUT nor the temporary file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from recsys.errors import ConfigError, IndexError_, RankerError, RecsysError, StoreError, ValidationFailed
from recsys.files import atomic_path
from recsys.store.limits import MAX_ID

if TYPE_CHECKING:
    from recsys.index import ItemFilter
    from recsys.service import Recommender
    from recsys.serving.generations import Served
    from recsys.serving.rules import ListRules
    from recsys.store import Store

JOB_WIDE = (StoreError, RankerError, IndexError_, ConfigError)
"""Errors that every user would meet alike (the store down, no ranker, no index): they end the whole job."""

FAILURES_SHOWN = 100
"""Failures listed in the JSON report: a store gone bad for most users must not make it megabytes."""

_KNOWN_CHUNK = 500  # ids per `IN (...)` query: far below SQLite's and PostgreSQL's parameter limits


@dataclass
class BatchReport:
    """What a run wrote: ``users`` asked for, ``written`` lists, ``unknown`` ids among them, and ``failures``."""

    out: str
    format: str
    users: int = 0
    written: int = 0
    unknown: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    ranker: str | None = None
    index_generation: str | None = None
    ranked_at: str | None = None
    """The time lists were ranked as of at the start (each jsonl line has its own: a wall clock moves on)."""

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def users_per_s(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """As ``--json`` prints it: the first :data:`FAILURES_SHOWN` failures (stderr said each), ``failed`` counts."""
        return {**asdict(self), "failures": self.failures[:FAILURES_SHOWN], "failed": self.failed,
                "users_per_s": round(self.users_per_s, 1), "seconds": round(self.seconds, 3)}


def output_format(out: Path) -> tuple[str, bool]:
    """(``jsonl`` or ``csv``, gzip-compressed) from OUT's name; ValidationFailed for any other name."""
    name = out.name.lower()
    gz = name.endswith(".gz")
    stem = name.removesuffix(".gz")
    for fmt in ("jsonl", "csv"):
        if stem.endswith(f".{fmt}"):
            return fmt, gz
    raise ValidationFailed(f"{out}: name the output file .jsonl or .csv (either may end in .gz), e.g. lists.jsonl.gz; "
                           "its name says the format")


def read_user_ids(path: Path) -> list[str]:
    """The ids in a users file, one a line (``\n``; a ``\r`` before it dropped), in order, each once; blank lines
    skipped. No comment syntax: an id may start with ``#``, and other line breaks (U+2028, U+0085) may be in one."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM (Excel, Notepad) is no part of the first id
    except OSError as e:
        raise ValidationFailed(f"{path}: cannot read the users file ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise ValidationFailed(f"{path}: the users file is not UTF-8 text ({e.reason} at byte {e.start})") from e
    lines = (ln.strip() for ln in text.split("\n"))
    return list(dict.fromkeys(ln for ln in lines if ln))


def stored_users(store: Store) -> list[str]:
    """Every stored user's id, in order, but those ``recsys evaluate --test-events`` replayed (no shoppers)."""
    from sqlalchemy import select

    from recsys.store.queries import IS_EVALUATION_USER
    from recsys.store.tables import User

    with store.reading() as c:
        q = select(User.external_id).where(~IS_EVALUATION_USER).order_by(User.external_id)
        return [str(u) for u in c.execute(q).scalars()]


def known_users(store: Store, ids: Sequence[str]) -> set[str]:
    """Those of ``ids`` that a stored user has."""
    from sqlalchemy import select

    from recsys.store.tables import User

    found: set[str] = set()
    with store.reading() as c:
        for i in range(0, len(ids), _KNOWN_CHUNK):
            q = select(User.external_id).where(User.external_id.in_(ids[i: i + _KNOWN_CHUNK]))
            found.update(str(u) for u in c.execute(q).scalars())
    return found


def check_output(out: Path, *, force: bool = False, explain: bool = False) -> tuple[str, bool]:
    """OUT's format (:func:`output_format`), once OUT is known to be writable as asked: not an existing file without
    ``force``, not a directory, in a directory that exists; ValidationFailed otherwise, before any work."""
    fmt, gz = output_format(out)
    if explain and fmt == "csv":
        raise ValidationFailed("explanations need a .jsonl output: a CSV row has no room for one")
    if out.is_dir():
        raise ValidationFailed(f"{out} is a directory: name the file to write; nothing was written")
    if (out.exists() or out.is_symlink()) and not force:
        raise ValidationFailed(f"{out} exists: pass --force to replace it, or name a new file; nothing was written")
    if not out.parent.is_dir():
        raise ValidationFailed(f"{out.parent} does not exist: create it, or name another file; nothing was written")
    if not os.access(out.parent, os.W_OK):
        raise ValidationFailed(f"{out.parent} cannot be written: name a file in a writable directory; nothing was "
                               "written")
    return fmt, gz


class _Lines:
    """The output file's rows, in its format."""

    def __init__(self, f: TextIO, fmt: str) -> None:
        self.f, self.csv = f, csv.writer(f, lineterminator="\n") if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(["user_id", "rank", "item_id", "score"])

    def write(self, user_id: str, known: bool, items: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        if self.csv is None:
            self.f.write(json.dumps({"user_id": user_id, "known": known, "items": items, **meta}, default=str) + "\n")
            return
        user = spreadsheet_safe(user_id)
        self.csv.writerows([user, n, spreadsheet_safe(it["item_id"]), it["score"]] for n, it in enumerate(items, 1))


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """``cell`` with a leading ``'`` when a spreadsheet would run it as a formula (an id such as ``=HYPERLINK(...)``,
    planted through an event, opened in Excel: OWASP's CSV injection); numbers such as ``-12`` stay as they are."""
    if not cell.startswith(_FORMULA_STARTS):
        return cell
    try:
        float(cell)
        return cell
    except ValueError:
        return "'" + cell


@contextmanager
def _staged(out: Path, fmt: str, gz: bool) -> Iterator[_Lines]:
    """Rows written to a temporary file beside OUT, synced and renamed onto OUT on success; removed on any exception
    (Ctrl-C and SIGTERM included), OUT left as it was (:func:`recsys.files.atomic_path`)."""
    try:
        with atomic_path(out) as tmp, open(tmp, "wb") as raw, \
                (gzip.GzipFile(out.name.removesuffix(".gz"), "wb", fileobj=raw) if gz else nullcontext(raw)) as b, \
                io.TextIOWrapper(b, encoding="utf-8", newline="") as f:  # gzip's header names OUT, not tmp
            yield _Lines(f, fmt)
    except OSError as e:  # a full disk, a directory gone read-only: nothing was written, as for any failure
        raise ValidationFailed(f"cannot write {out} ({e.strerror or e}): nothing was written; free space or pick "
                               "another place, and run it again") from e


def _iso(day: float) -> str:
    return datetime.fromtimestamp(day * 86400.0, UTC).isoformat(timespec="seconds")


def _ranker_id(served: Served, rules: ListRules | None) -> str | None:
    """The ranker a list comes from: the served one, or the stored generation a variant's rules name."""
    return (rules.ranker if rules is not None else None) or (served.ranker.ranker_id if served.ranker else None)


def _not_an_id(user_id: str) -> str | None:
    """Why ``user_id`` is no user id, as ``recsys recommend`` and the API's path refuse one; None when it is one."""
    if len(user_id) > MAX_ID or any(ord(c) < 32 for c in user_id):
        return f"{user_id[:40]!r} is not a user id (1 to {MAX_ID} characters, no control characters)"
    return None


def write_lists(rec: Recommender, out: str | Path, users: Sequence[str] | None = None, k: int = 20, *,
                force: bool = False, filter: ItemFilter | None = None, exclude: Sequence[str] = (),
                diversity: float | None = None, explain: bool = False, now: datetime | None = None,
                rules: ListRules | None = None, progress: Callable[[int, int], None] | None = None,
                on_failure: Callable[[str, RecsysError], None] | None = None) -> BatchReport:
    """Write ``k``-item lists to ``out`` for ``users`` (None: every stored user but evaluation replays), each as
    ``rec.recommend(user, k, ...)`` gives it. A user whose list fails with a RecsysError is left out, told to
    ``on_failure`` and listed in the report's ``failures``; errors every user would meet (:data:`JOB_WIDE`) end the
    job with nothing written. ``progress(done, total)`` after each user."""
    out = Path(out)
    fmt, gz = check_output(out, force=force, explain=explain)
    started = time.monotonic()
    served = rec.generations.current()
    if served.ranker is None:
        raise rec.generations.no_ranker()
    report = BatchReport(out=str(out), format=fmt + (".gz" if gz else ""), ranker=_ranker_id(served, rules),
                         index_generation=served.reader.generation_id,
                         ranked_at=_iso(rec.clock(served, now)))  # a --now before the data: said once, not per user
    ids = stored_users(rec.store) if users is None else list(dict.fromkeys(users))
    known = set(ids) if users is None else known_users(rec.store, ids)
    report.users = len(ids)
    with _staged(out, fmt, gz) as lines:
        for n, user in enumerate(ids, 1):
            served = rec.generations.current()
            meta = {"ranker": _ranker_id(served, rules), "index_generation": served.reader.generation_id,
                    "ranked_at": _iso(rec.clock(served, now))}
            try:
                if (why := _not_an_id(user)) is not None:
                    raise ValidationFailed(why)
                found = rec.recommend(user, k, filter=filter, exclude=exclude, diversity=diversity, explain=explain,
                                      now=now, rules=rules)
            except JOB_WIDE:
                raise
            except RecsysError as e:
                report.failures.append({"user_id": user, "code": e.code, "message": e.message})
                if on_failure is not None:
                    on_failure(user, e)
            else:
                items = [{key: v for key, v in r.to_dict().items() if key != "item"} for r in found]
                lines.write(user, user in known, items, meta)
                report.written += 1
                report.unknown += user not in known
            if progress is not None:
                progress(n, len(ids))
    report.seconds = time.monotonic() - started
    return report
