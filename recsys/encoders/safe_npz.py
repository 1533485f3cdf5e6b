"""Reading a vectors snapshot (``vectors.npz``) without running code from it.

Its ids and hashes are numpy object arrays, which numpy stores pickled; ``np.load(..., allow_pickle=True)`` would
run whatever a planted file's pickle names (a backup restored from elsewhere is such a file). Here an object array
is unpickled with only numpy's array reconstruction allowed, and must come out as an array of strings; every other
member is read as numpy reads it, without pickle. Only the members asked for are read (the packed vectors of a
large catalogue are gigabytes).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import numpy as np

_ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                      ("numpy", "ndarray"), ("numpy", "dtype")})
"""What numpy's pickle of an object array names (``numpy.core`` before numpy 2): nothing else is looked up."""


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of an array of strings: refused")
        return super().find_class(module, name)  # type: ignore[no-any-return]


def load(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the archive at ``path`` (those it holds). Raises zipfile.BadZipFile, ValueError,
    EOFError or pickle.UnpicklingError for a damaged or foreign file."""
    out = {}
    with zipfile.ZipFile(path) as z:
        held = {n.removesuffix(".npy"): n for n in z.namelist()}
        for name in names:
            if name in held:
                with z.open(held[name]) as f:
                    out[name] = _read(f)
    return out


def _read(f: IO[bytes]) -> np.ndarray:
    version = np.lib.format.read_magic(f)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = header(f)
    if not dtype.hasobject:
        count = int(np.prod(shape, dtype=np.int64))
        data = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype, count=count)
        return data.reshape(shape, order="F" if fortran else "C")
    arr = _ArrayUnpickler(f).load()
    if not isinstance(arr, np.ndarray) or arr.dtype != object or arr.shape != tuple(shape) or \
            not all(isinstance(x, str) for x in arr.ravel()):
        raise ValueError("an object array that is not an array of strings")
    return arr
