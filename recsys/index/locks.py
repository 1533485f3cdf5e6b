"""The lock that lets one build at a time publish under an index root (also taken by API publications and ranker
saves, under other names)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

_HELD = threading.local()


@contextlib.contextmanager
def build_lock(root: Path, name: str = "build.lock") -> Iterator[None]:
    """One build at a time per root, across threads, processes and replicas sharing the directory: a ``filelock``
    (``flock`` on POSIX, released by the OS if the process dies; the file stays so every waiter locks one inode).
    A new lock object per call, so threads of one process exclude each other too. A thread that holds it already
    goes on (a build's switch writes its catch-up delta under the same lock: see
    :class:`recsys.index.layout.Rebase`)."""
    from filelock import FileLock

    Path(root).mkdir(parents=True, exist_ok=True)
    path = str((Path(root) / name).absolute())
    held: set[str] = _HELD.__dict__.setdefault("paths", set())
    if path in held:
        yield
        return
    with FileLock(path):
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
