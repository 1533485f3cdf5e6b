"""The one exception tree of recsys.

Domain code raises these; the API maps each to an HTTP status in one handler, the CLI prints the message and exits
non-zero. Every message says what is wrong and what to do about it.

    RecsysError                       code            HTTP
    ├── ConfigError                   config          500 (never raised by a request)
    ├── StoreError                    store           503
    │   ├── StoreUnavailable          store_down      503 (+ Retry-After)
    │   │   ├── SchemaBehind          store_down      503 (+ Retry-After; the schema could not be brought up to date)
    │   │   ├── StoreBusy             store_busy      503 (+ Retry-After; SQLite locked by another writer)
    │   │   │   └── StoreTimeout      store_busy      503 (+ Retry-After; PostgreSQL gave no answer within the bound)
    │   │   ├── StoreDamaged          store_damaged   503 (the SQLite file is not a database, or corrupt)
    │   │   ├── StoreReadOnly         store_read_only 500 (the SQLite file or its directory cannot be written)
    │   │   └── DiskFull              disk_full       507 (no space left for the database or its temporary files)
    │   ├── SchemaMismatch            store_schema    500 (a schema revision this code does not know)
    │   └── StoreDenied               store_denied    500 (PostgreSQL refused the role a privilege, SQLSTATE 42501)
    ├── ImportFailed                  import_failed   400  (file unreadable: names file and line)
    ├── ValidationFailed              invalid         422
    │   ├── BeforeData                invalid         422 (a request time before every event known)
    │   └── PayloadTooLarge           too_large       413
    ├── NotFound                      not_found       404
    │   ├── UnknownItem               unknown_item    404
    │   └── UnknownUser               unknown_user    404
    ├── EncoderError                  encoder         422
    │   ├── UnknownPreset             unknown_preset  422
    │   ├── ModelUnavailable          model_missing   503
    │   ├── BadMedia                  bad_media       422
    │   ├── TooFewPairs               encoder         422 (nothing to fit the heads on: `recsys build` goes on unfitted)
    │   └── EncoderStorageError       encoder         503 (a cache, the heads or a snapshot cannot be read or written)
    ├── IndexError_                   index           503
    │   ├── NoIndex                   no_index        503
    │   └── IncompatibleArtifact      incompatible    409
    ├── RankerError                   ranker          503
    │   └── UnknownRanker             ranker          503 (recsys.serving.generations: a variant's generation)
    ├── RateLimited                   rate_limited    429 (+ Retry-After)
    └── AuthError                     unauthorized    401
        └── Forbidden                 forbidden       403

A few more subclasses live beside the code that raises them (as UnknownRanker) and keep their parent's code and
status; :mod:`recsys.client` adds its own for answers and failures of the connection.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any


class RecsysError(Exception):
    """Base of every error recsys raises on purpose."""

    code = "error"
    status = 400
    request_id: str | None = None
    """The server's id of the request that failed (set by :mod:`recsys.client`; the server log has it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RecsysError):
    code, status = "config", 500


class StoreError(RecsysError):
    code, status = "store", 503


class StoreUnavailable(StoreError):
    code, status = "store_down", 503
    retry_after: int | None = None
    """Seconds the server asked to wait (``Retry-After``), where :mod:`recsys.client` got one."""


class SchemaBehind(StoreUnavailable):
    """The database answers, but its schema could not be brought up to date (a failed migration): requests wait
    for the server's next try, the server log says why."""

    public = "the database's schema could not be brought up to date (the server log says why); retry later"


class StoreBusy(StoreUnavailable):
    """SQLite held by another writer (an import, a build) for longer than a request may wait."""

    code = "store_busy"


class StoreTimeout(StoreBusy):
    """PostgreSQL gave no answer within a request's bound (a held lock, a slow statement, an overloaded or hung
    server): 503 ``store_busy`` with Retry-After, like SQLite's lock, since waiting heals it too. ``seconds`` is the
    bound, None where the server's own timeout (not the request's) ended the wait."""

    def __init__(self, message: str, seconds: float | None = None) -> None:
        super().__init__(message)
        self.seconds = seconds


class StoreDamaged(StoreUnavailable):
    """The database file is not a database or is corrupt: no retry helps; a backup or a re-import does."""

    code = "store_damaged"


class StoreReadOnly(StoreUnavailable):
    """The SQLite file, or the directory its journal goes in, cannot be written (a read-only mount, another user's
    file): reads may work, writes never will until the operator makes it writable, so no retry helps (HTTP 500, as
    StoreDenied, without Retry-After)."""

    code, status = "store_read_only", 500


class DiskFull(StoreUnavailable):
    """The disk holding the database (or SQLite's temporary files) is full: the write was rolled back, the store is
    as it was. No server is down and waiting does not heal it: the operator frees space (HTTP 507, Insufficient
    Storage, without Retry-After)."""

    code, status = "disk_full", 507

    @classmethod
    def sqlite(cls, database: Path | None, why: str) -> DiskFull:
        """SQLite's "database or disk is full" of the file ``database`` (None: a private temporary database): the
        disk holding it, or the temporary directory where SQLite sorts and spills, where that is another disk."""
        tmp = _sqlite_temp_dir()
        if database is None:
            return cls(f"the temporary directory {tmp} is full ({why}): nothing of the write was stored. Free space "
                       "there (or point SQLITE_TMPDIR at a disk with room) and run it again")
        folder = database.absolute().parent
        also = ""
        with contextlib.suppress(OSError):
            if os.stat(tmp).st_dev != os.stat(folder).st_dev:
                also = f" (or the temporary directory {tmp}, where SQLite sorts: SQLITE_TMPDIR moves it)"
        # said of reads too: with no byte left SQLite cannot even open the file to read (its -shm is a new file)
        return cls(f"the disk holding {folder} is full{also} ({why}): nothing was written to {database.name} (a "
                   "write under way was rolled back). Free space there and run it again")


def _sqlite_temp_dir() -> Path:
    """The directory SQLite puts its temporary files in on Unix: the first writable one of $SQLITE_TMPDIR, $TMPDIR,
    /var/tmp, /usr/tmp and /tmp."""
    for d in (os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), "/var/tmp", "/usr/tmp", "/tmp"):
        if d and os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK):
            return Path(d)
    return Path(".")


class SchemaMismatch(StoreError):
    """The database's schema revision (or the one asked for) is not one this code knows: no retry helps."""

    code, status = "store_schema", 500


class StoreDenied(StoreError):
    """PostgreSQL refused the login role a privilege on a table, sequence or schema (SQLSTATE 42501): the role was
    set up without it, so no retry helps; the database's owner grants it."""

    code, status = "store_denied", 500

    @classmethod
    def of(cls, url: str, e: BaseException) -> StoreDenied | None:
        """The error for ``e`` (a SQLAlchemy error) if the database refused a privilege, else None. ``url``: the
        database's, its password hidden (:func:`recsys.config.without_password`)."""
        orig = getattr(e, "orig", None) or e
        if getattr(orig, "sqlstate", None) != "42501":
            return None
        from sqlalchemy.engine import make_url

        why = str(orig).splitlines()[0] if str(orig) else "permission denied"
        role = make_url(url).username
        verb = (str(getattr(e, "statement", "") or "").split() or [""])[0].upper()
        what = {"SELECT": "a SELECT", "INSERT": "an INSERT", "UPDATE": "an UPDATE", "DELETE": "a DELETE",
                "CREATE": "a CREATE", "ALTER": "an ALTER", "DROP": "a DROP"}.get(verb, "a statement")
        who = f"role {role}" if role else "the role it logs in as"
        grantee = role or "ROLE"
        if verb in ("CREATE", "ALTER", "DROP") or any(w in why for w in (" for schema ", " for database ",
                                                                         "must be owner")):  # a migration's work
            todo = "run the migration (`recsys db upgrade` or `downgrade`) as the owner of the database's tables" + (
                f", or have it run GRANT CREATE ON SCHEMA public TO {grantee}" if " for schema " in why else "")
        else:
            todo = (f"recsys reads and writes every table of its schema: have the tables' owner (or a superuser) run "
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {grantee}; GRANT USAGE, "
                    f"SELECT ON ALL SEQUENCES IN SCHEMA public TO {grantee}; or connect as the tables' owner")
        return cls(f"database {url} refused {who} {what} ({why}); nothing was changed. To fix it, {todo}")


class ImportFailed(RecsysError):
    code, status = "import_failed", 400


class ValidationFailed(RecsysError):
    code, status = "invalid", 422
    details: list[Any] | None = None
    """The server's list of every problem (field and reason), where :mod:`recsys.client` got one."""


class BeforeData(ValidationFailed):
    """A request time before every event the ranker knows: nothing to rank by (a replay scores such a user 0)."""


class NotFound(RecsysError):
    code, status = "not_found", 404


class UnknownItem(NotFound):
    code = "unknown_item"


class UnknownUser(NotFound):
    code = "unknown_user"


class EncoderError(RecsysError):
    code, status = "encoder", 422


class UnknownPreset(EncoderError):
    code = "unknown_preset"


class ModelUnavailable(EncoderError):
    code, status = "model_missing", 503


class BadMedia(EncoderError):
    code = "bad_media"


class TooFewPairs(EncoderError):
    """Too few items have both a decodable image and text to fit the encoder's heads on (a text-only catalogue, a
    shop of two items): ``recsys encoder fit`` refuses; ``recsys build`` goes on with the unfitted heads."""


class EncoderStorageError(EncoderError):
    """A vector cache, fitted heads or a vectors snapshot under the data directory cannot be read or written (disk
    full, read-only, I/O error, too many open files). Nothing is damaged or set aside: the operator frees space or
    fixes the directory, and a rerun resumes from what was cached."""

    code, status = "encoder", 503


class IndexError_(RecsysError):
    code, status = "index", 503


class NoIndex(IndexError_):
    code = "no_index"


class IncompatibleArtifact(IndexError_):
    code, status = "incompatible", 409


class RankerError(RecsysError):
    code, status = "ranker", 503


class AuthError(RecsysError):
    code, status = "unauthorized", 401


class Forbidden(AuthError):
    code, status = "forbidden", 403


class RateLimited(RecsysError):
    """Too many requests for one API key (HTTP 429, with Retry-After)."""

    code, status = "rate_limited", 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(ValidationFailed):
    """A request body or uploaded image over the configured limits (HTTP 413)."""

    code, status = "too_large", 413
