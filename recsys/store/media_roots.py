"""The folders imports read their images from, recorded in the data directory: the server serves a photo only from
under a media root (``api.media_roots`` and the data directory), and a dataset imported from elsewhere (``recsys
import hm ../shared/data/hm``) would otherwise show no photo until its folder was configured by hand. Imports are run
by whoever runs the CLI on the data directory, so the folders they name are trusted like the configured ones."""

from __future__ import annotations

import json
import logging
import os
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
                    "until it is rewritten by the next import, or api.media_roots names their folders", path, e)
        return []
    _read[path] = (mtime, roots)
    return roots


def record_media_root(settings: Settings, source: Path) -> None:
    """Add the folder of an imported file or dataset directory to the recorded ones (written atomically)."""
    folder = Path(os.path.realpath(source if source.is_dir() else source.parent))
    roots = imported_media_roots(settings)
    home = Path(os.path.realpath(settings.home))
    if folder in roots or folder == home or folder.is_relative_to(home):
        return
    path = settings.path(FILE)
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([str(p) for p in [*roots, folder]], indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not record %s as a media root (%s); set api.media_roots to serve its photos", folder, e)
