"""What ``recsys index verify`` checks: a generation's files against the checksums it was built with, its manifest
against its own checksum, and the generation opened as a server opens it. Only the load finds some damage (segment
counts that disagree with the metadata, a file FAISS cannot read), and only the manifest checksum finds an edited
field a load does not use (the encoder id it is judged compatible by). Also what the generations take on disk, for
``recsys index list``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.errors import RecsysError
from recsys.index import layout
from recsys.index.reader import IndexReader

if TYPE_CHECKING:
    from recsys.config import IndexSettings

UNCHECKSUMMED = "manifest not checksummed (older generation)"


@dataclass(frozen=True)
class Checkup:
    generation_id: str
    bad_files: list[str]
    """Files missing or differing from their checksums (``manifest.json`` when its own fields changed)."""
    problems: list[str] = field(default_factory=list)
    """Why the generation cannot be loaded although its files are intact."""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad_files and not self.problems


def check_generation(root: Path, generation: str | None, settings: IndexSettings) -> Checkup:
    """Check ``generation`` (default: the current one) under ``root``; NoIndex / NotFound when there is none."""
    path = layout.generation_path(root, generation)
    m = layout.read_manifest(path)
    bad = layout.verify_files(path, m)
    notes = [] if m.manifest_checksum else [UNCHECKSUMMED]
    problems = []
    if not bad:  # every file was just hashed: the load compares sizes only
        try:
            IndexReader.open(root, generation=path.name, settings=settings.model_copy(update={"verify_on_load_mb": 0}))
        except RecsysError as e:
            problems.append(e.message)
    return Checkup(path.name, bad, problems, notes)


def disk_bytes(root: Path) -> int:
    """Bytes the generations take on disk: a file a delta hard-links from its base is counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    gdir = layout.generations_dir(root)
    for p in gdir.rglob("*") if gdir.is_dir() else ():
        try:
            st = p.lstat()
        except OSError:  # pruned while walking
            continue
        if p.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
