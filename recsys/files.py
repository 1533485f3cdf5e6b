"""Durable, atomic file writes shared by every stage that publishes an artifact (encoder heads, vector snapshots,
index generations, rankers): a reader sees the old file or the new one, never a mix, and a failed write (a full
disk) leaves no temporary file behind to keep the space."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on leaving, its contents are synced to disk and renamed over
    ``path``. An exception inside removes the temporary file and leaves ``path`` as it was."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see either the old or the new content, never a mix."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
