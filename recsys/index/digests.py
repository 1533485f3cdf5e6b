"""How a generation's files and manifest are hashed (SHA-256) for its checksums, and the hashes this process
already took, so a file verified at load is not read again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_LOADED: dict[tuple[int, int], tuple[int, int, str]] = {}
"""(device, inode) -> (size, mtime ns, SHA-256) of the files this process hashed verifying a generation (a load)."""


def verified_hash(path: Path, trust_loads: bool = False) -> str:
    """``path``'s SHA-256, remembered; with ``trust_loads`` one remembered for the same inode, size and mtime is
    returned unread. The stat is taken before reading: a write while hashing leaves a key that never matches."""
    st = path.stat()
    key = (st.st_dev, st.st_ino)
    hit = _LOADED.get(key)
    if trust_loads and hit is not None and hit[:2] == (st.st_size, st.st_mtime_ns):
        return hit[2]
    digest = sha256_file(path)
    if len(_LOADED) > 100_000:
        _LOADED.clear()
    _LOADED[key] = (st.st_size, st.st_mtime_ns, digest)
    return digest


def checksum_of(files: dict[str, str]) -> str:
    """One checksum over the per-file digests (names sorted)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{files[name]}\n".encode())
    return h.hexdigest()


def manifest_checksum(fields: dict[str, Any]) -> str:
    """SHA-256 of a manifest's fields as written (JSON), but ``manifest_checksum`` itself: the fields that decide
    how a generation loads and what it is served with (segments, counts, encoder, dim) are covered, not only files."""
    rest = {k: v for k, v in json.loads(json.dumps(fields, default=str)).items() if k != "manifest_checksum"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
