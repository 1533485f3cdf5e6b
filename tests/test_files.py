"""Atomic writes: the old file or the new one, and nothing left behind by a failed write."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.files import atomic_path, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "vectors.npz"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="No space left"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise OSError(28, "No space left on device")  # as numpy's write raised on a full disk
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["vectors.npz"]
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["vectors.npz"]
