"""Where item images may live: the media roots, and where a recorded image is now.

The media roots are the data directory, ``api.media_roots`` and the folders imports read their images from, recorded
in the data directory: the server serves a photo only from under a media root, and a dataset imported from elsewhere
(``recsys import hm ../shared/data/hm``) would otherwise show no photo until its folder was configured by hand.
Imports are run by whoever runs the CLI on the data directory, so the folders they name are trusted like the
configured ones. :func:`relocated` finds a recorded picture in a data directory moved or copied since its import;
the explorer and the encoders both use it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
from collections.abc import Iterable
from pathlib import Path

from recsys.config import Settings

log = logging.getLogger(__name__)

FILE = "imported_media_roots.json"


_read: dict[Path, tuple[tuple[int, int], list[Path]]] = {}
"""Per file, ((inode, modification time), its folders): every image the server sends asks, the file rarely changes
(and is replaced whole, so a new version has a new inode)."""


def imported_media_roots(settings: Settings) -> list[Path]:
    """The recorded folders (none when nothing was imported from outside the data directory)."""
    path = settings.home / FILE
    try:
        st = path.stat()
        mtime = (st.st_ino, st.st_mtime_ns)
        seen = _read.get(path)
        if seen is not None and seen[0] == mtime:
            return seen[1]
        roots = [Path(p) for p in json.loads(path.read_text(encoding="utf-8"))]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError) as e:
        log.warning("could not read %s (%s): photos of imported datasets outside the data directory are not served "
                    "until it is rewritten by the next import, or RECSYS_API__MEDIA_ROOTS names their folders", path, e)
        return []
    _read[path] = (mtime, roots)
    return roots


def record_media_root(settings: Settings, source: Path) -> None:
    """Add the folder of an imported file or dataset directory to the recorded ones (written atomically), with the
    targets of the folders linked from it (``images -> /mnt/photos``: a path under the folder that resolves
    elsewhere would be refused by the server, as a link can point anywhere)."""
    given = source if source.is_dir() else source.parent
    roots = imported_media_roots(settings)
    home = Path(os.path.realpath(settings.home))
    new = [f for f in dict.fromkeys([Path(os.path.realpath(given)), *_linked_folders(given)])
           if not any(f == r or f.is_relative_to(r) for r in [*roots, home])]
    if not new:
        return
    path = settings.path(FILE)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps([str(p) for p in [*roots, *new]], indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):  # a full disk leaves it empty or cut short: never a file to read later
            tmp.unlink(missing_ok=True)
        # the setting as it is set, with the folders configured already (it replaces them)
        value = json.dumps([str(p) for p in [*settings.api.media_roots, *new]])
        log.warning("could not record %s as a media root (%s); set RECSYS_API__MEDIA_ROOTS=%s to serve its photos",
                    ", ".join(map(str, new)), e.strerror or e, shlex.quote(value))


def _linked_folders(folder: Path, depth: int = 2, limit: int = 10_000) -> list[Path]:
    """The resolved targets of symbolic links to folders within ``depth`` levels under ``folder`` (the layouts
    datasets use: ``images/`` or ``images/<part>/`` linked to another disk), looking at ``limit`` entries at most."""
    found: list[Path] = []
    level, seen = [folder], 0
    for _ in range(depth):
        below: list[Path] = []
        for d in level:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries[: max(0, limit - seen)]:
                seen += 1
                try:  # follows links: a link to a folder is a folder here
                    linked, is_dir = e.is_symlink(), e.is_dir()
                except OSError:  # a link loop (ELOOP) or an entry we may not stat (EACCES): no folder of photos
                    continue
                if is_dir:
                    (found if linked else below).append(Path(os.path.realpath(e.path)))
        level = below
    return found


DERIVED = ("secrets", "index", "encoders", "rankers", "cache", "vectors", "onnx", "reports")
"""Folders of the data directory that hold keys and derived files, never pictures (``cache`` holds SQLite databases
the server opens: the same lock hazard as the store's own file)."""
STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")
"""The SQLite database file and its side files."""
PRIVATE_REASON = ("the data directory's own files (the store's database, secrets/, index/, encoders/, rankers/, "
                  "cache/, vectors/, onnx/, reports/) are not media")


class MediaRoots(list[Path]):
    """The media roots, resolved, and the data directory's private files under them (:func:`private`): the store's
    SQLite file and its side files, and the folders of :data:`DERIVED`. Opening and closing the database file in the
    server (as a picture) drops SQLite's POSIX locks, so another process may delete the WAL under it: such a path is
    never under the roots."""

    def __init__(self, roots: Iterable[Path], files: Iterable[Path] = (), folders: Iterable[Path] = ()) -> None:
        super().__init__(roots)
        self.files = frozenset(files)
        self.folders = tuple(folders)
        self.inodes = frozenset(_inode(f) for f in self.files) - {None}


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # no open: locks are untouched
    except OSError:
        return None
    return st.st_dev, st.st_ino


def database_file(settings: Settings) -> Path:
    """The SQLite file of the store: the data directory's ``recsys.db``, or the one a ``sqlite:///`` URL names."""
    url = settings.database_url or ""
    if url.startswith("sqlite:///"):
        return Path(os.path.realpath(url[len("sqlite:///"):].split("?", 1)[0]))
    return Path(os.path.realpath(settings.home / "recsys.db"))


def private(path: Path, roots: Iterable[Path]) -> bool:
    """Whether ``path`` (resolved) is one of the data directory's private files that ``roots`` (a
    :class:`MediaRoots`) names: the store's database or a side file (by path or by inode: a hard link), or a file
    under ``secrets/``, ``index/``, ``encoders/`` or ``rankers/``. The one test every media lookup makes before a file
    is touched."""
    if not isinstance(roots, MediaRoots):
        return False
    if path in roots.files or any(path == f or path.is_relative_to(f) for f in roots.folders):
        return True
    return bool(roots.inodes) and _inode(path) in roots.inodes


def media_roots(settings: Settings) -> MediaRoots:
    """The directories images may be read from: the data directory, the configured ones and those imports read
    their datasets from, resolved; with the data directory's private files, never media (:func:`private`)."""
    home = Path(os.path.realpath(settings.home))
    db = database_file(settings)
    return MediaRoots([Path(os.path.realpath(p)) for p in [settings.home, *settings.api.media_roots,
                                                           *imported_media_roots(settings)]],
                      files=[db.with_name(db.name + s) for s in STORE_SUFFIXES],
                      folders=[home / d for d in DERIVED])


def under_roots(path: Path, roots: Iterable[Path]) -> bool:
    """Whether ``path`` (absolute) lies under one of ``roots``, after resolving ``..`` and symbolic links, and is
    none of the data directory's private files (:func:`private`)."""
    if not path.is_absolute():
        return False
    real = Path(os.path.realpath(path))
    return any(real == r or real.is_relative_to(r) for r in roots) and not private(real, roots)


def relocated(path: Path, home: Path, roots: Iterable[Path]) -> Path | None:
    """The file a recorded image path names in a data directory that was moved or copied since the import.

    Imports record absolute paths (``/old/home/demo-data/images/1.png``), so a moved or copied home would find
    none of its own pictures. This finds the longest tail of the path, from a folder down (a bare file name matches
    too much), that is a file under ``home`` now (``<home>/demo-data/images/1.png``). The result still has to lie
    under ``roots`` once links are resolved, and a path with ``..`` is never looked up: nothing outside the media
    roots is ever returned."""
    if not path.is_absolute() or ".." in path.parts:
        return None
    base = Path(os.path.realpath(home))
    roots = roots if isinstance(roots, list) else list(roots)  # a MediaRoots keeps its private files
    tail = path.parts[1:]  # without the anchor ("/")
    for i in range(len(tail) - 1):  # longest tail first: the most specific match
        candidate = base.joinpath(*tail[i:])
        if candidate.is_file() and under_roots(candidate, roots):  # one stat before resolving links: 2.7 -> ms
            return candidate
    return None
