"""The lock that lets one build at a time publish under an index root (also taken by API publications and ranker
saves, under other names), and the one-line errors of commands that cannot take it."""

from __future__ import annotations

import contextlib
import errno
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from recsys.errors import IndexError_, RecsysError

_HELD = threading.local()
LOCK_FILE = "build.lock"


@contextlib.contextmanager
def build_lock(root: Path, name: str = LOCK_FILE, timeout: float = -1) -> Iterator[None]:
    """One build at a time per root, across threads, processes and replicas sharing the directory: a ``filelock``
    (``flock`` on POSIX, released by the OS if the process dies; the file stays so every waiter locks one inode).
    A new lock object per call, so threads of one process exclude each other too. A thread that holds it already
    goes on (a build's switch writes its catch-up delta under the same lock: see
    :class:`recsys.index.layout.Rebase`). ``timeout`` (seconds; -1 waits for ever): ``filelock.Timeout`` (an
    OSError) when another holder keeps it longer."""
    from filelock import FileLock

    Path(root).mkdir(parents=True, exist_ok=True)
    path = str((Path(root) / name).absolute())
    held: set[str] = _HELD.__dict__.setdefault("paths", set())
    if path in held:
        yield
        return
    with FileLock(path, timeout=timeout):
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)


def unwritable(root: Path, e: OSError, doing: str) -> IndexError_:
    """One line naming ``root`` for an ``OSError`` met writing under it (a read-only mount, another user's
    directory) before anything was changed."""
    fix = ("make it writable (RECSYS_HOME names the data directory; a read-only mount cannot be changed)"
           if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "free space there")
    return IndexError_(f"cannot {doing}: {root} cannot be written ({e.strerror or e}); nothing changed. To fix it, "
                       f"{fix}, and run it again")


def check_writable(root: Path, doing: str, lock_file: str = LOCK_FILE) -> None:
    """The one-line :func:`unwritable` error now, when the lock's file under ``root`` (the build lock's, or
    ``lock_file``) cannot be opened for writing: a job learns it before spending minutes reading or training."""
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        with open(Path(root) / lock_file, "a"):
            pass
    except OSError as e:
        raise unwritable(root, e, doing) from e


MIN_FREE = 4 * 1024 * 1024
"""Bytes a first artifact (nothing saved before to measure) asks to be free: a small ranker or heads file."""


def space_needed(current: Path | None, minimum: int = MIN_FREE) -> int:
    """Bytes to keep free for the next artifact like ``current`` (a generation's directory or a file; None: none
    yet): its size and a quarter more (more items, events or features), at least ``minimum``."""
    files = [] if current is None else [current] if current.is_file() else [f for f in current.rglob("*")
                                                                             if f.is_file()]
    size = sum(f.stat().st_size for f in files)
    return max(minimum, size + size // 4)


def check_space(root: Path, doing: str, need: int, error: type[RecsysError] = IndexError_) -> None:
    """``error`` now when the disk holding ``root`` has less than ``need`` bytes free: a job that saves an artifact
    there at its end (a ranker, encoder heads) learns it before minutes of training, not at the save."""
    where = next((p for p in (Path(root), *Path(root).parents) if p.exists()), Path("."))
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # nothing to measure: the write itself says what is wrong
    if free < need:
        raise error(f"cannot {doing}: the disk holding {root} has {free / 2**20:.1f} MB free, and the result needs "
                    f"about {need / 2**20:.1f} MB (the current one's size and a quarter more, at least "
                    f"{MIN_FREE / 2**20:.0f} MB); nothing changed. To fix it, free space there, and run it again")


@contextlib.contextmanager
def write_lock(root: Path, doing: str, *, wait_s: float = -1, busy: str = "") -> Iterator[None]:
    """:func:`build_lock` for a command that writes under ``root``: the lock's own failures are one line instead
    of a traceback: a directory that cannot be written (:func:`unwritable`), and with ``wait_s`` (seconds) another
    holder that keeps it longer (IndexError_, ``busy`` saying what that would do). Errors inside are the caller's."""
    from filelock import Timeout

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(build_lock(root, timeout=wait_s))
        except Timeout:  # an OSError too: first
            raise IndexError_(f"cannot {doing}: a build (or an API publication) under {root} still holds "
                              f"{LOCK_FILE} after {wait_s:g} s; nothing changed. {busy}Run it again when that "
                              "build has finished") from None
        except OSError as e:
            raise unwritable(root, e, doing) from e
        yield
