"""Sharded IVF indexes for catalogues beyond one machine's memory (DESIGN.md section 6).

A catalogue too large to hold is built in a stream. One quantizer (coarse centroids, PQ codebooks, any rotation) is
trained once on a sample (:func:`train_empty`); each chunk of vectors then becomes a shard, a copy of that empty
trained index holding only the chunk, with the chunk's global row numbers as ids (:func:`write_shard`). Only one
chunk is in memory at a time, and shards can be built on different machines.

Because every shard shares the trained quantizer, their inverted lists line up list by list. They are used either

- merged into one index whose lists live in a file next to it and are memory-mapped (:func:`merge_on_disk`, faiss
  ``OnDiskInvertedLists``): RAM holds the quantizer, the page cache holds the lists queries touch. A merge into a
  directory that already holds one never rewrites a file a reader may have mapped (FAISS would truncate it under the
  reader: SIGBUS): the lists go to a new file and ``merged.faiss`` is replaced by one rename (:func:`write_shard`
  over a served shard likewise); or
- searched side by side (:func:`open_shards`, a ``faiss.IndexShards`` merging each shard's top-k by score), e.g.
  one shard per replica or per disk.

Both give exactly the results of one index filled with all the vectors. Needs an IVF index with plain codes
(``IVF...,PQ...``, ``IVF...,SQ8``, ``IVF...,Flat``); fast-scan (``...fs``) lists are laid out in blocks that cannot be
merged on disk.

FAISS itself checks only that shards have the same ``nlist`` and code size, so codes written with other codebooks
(another ``train_empty`` run, even another dimension) would be merged and decoded wrongly. Before merging or opening,
every shard is therefore checked against the trained index (or the first shard): its quantizer fingerprint, a
SHA-256 of the shard's own serialised index with its lists emptied, must match, and no two shards may cover the
same rows. The fingerprint is computed from the shard file, so shards written before the sidecar existed are checked
too; the JSON sidecar ``NAME.json`` that :func:`write_shard` leaves beside each shard records the fingerprint and
the shard's rows, so opening a shard need not scan its ids.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.errors import ValidationFailed
from recsys.files import atomic_path, fsync_dir, fsync_file, write_text_atomic
from recsys.index.factory import faiss_module, new_index, train_index
from recsys.index.locks import build_lock

if TYPE_CHECKING:
    from recsys.config import IndexSettings

log = logging.getLogger(__name__)

MERGED = "merged.faiss"
SIDECAR_FORMAT = 1
_REWRITE = "write every shard with write_shard from one trained index (a single train_empty run)"


@dataclass(frozen=True)
class _Shape:
    """What must be equal for two IVF indexes' lists to be interchangeable."""

    layout: str  # index type (and wrapper), e.g. IndexPreTransform/IndexIVFPQ
    d: int
    nlist: int
    code_size: int
    quantizer: str  # SHA-256 of the index serialised with no vectors (centroids, codebooks, rotation, metric)


@dataclass(frozen=True)
class _Shard:
    path: Path
    shape: _Shape
    count: int
    rows: tuple[int, int] | None  # smallest and largest id; None for an empty shard


def train_empty(sample: np.ndarray, factory: str, settings: IndexSettings) -> Any:
    """An empty IVF index trained on ``sample`` (m, d) float32: the quantizer every shard shares."""
    faiss = faiss_module()

    index = new_index(sample.shape[1], factory, settings)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or isinstance(ivf, faiss.IndexIVFFastScan):
        raise ValidationFailed(f"sharded indexes need an IVF factory with plain codes (e.g. IVF4096,PQ64), "
                               f"not {factory!r}")
    train_index(index, sample, factory)
    return index


def sidecar_path(shard: Path) -> Path:
    """The JSON file beside ``shard`` recording its quantizer fingerprint and rows (``0.faiss`` -> ``0.faiss.json``)."""
    return shard.with_name(shard.name + ".json")


def write_shard(trained: Any, vectors: np.ndarray, first_row: int, path: Path) -> Path:
    """Write the shard holding ``vectors`` (m, d) float32, whose ids are rows ``first_row..first_row+m-1``, and its
    sidecar (:func:`sidecar_path`). Each file is written under a temporary name and renamed over ``path``, so a
    process serving the old shard keeps answering from it and a failed write leaves the old shard as it was."""
    faiss = faiss_module()

    if vectors.ndim != 2 or vectors.shape[1] != trained.d:
        raise ValidationFailed(f"shard vectors must be (n, {trained.d}), got {vectors.shape}")
    if trained.ntotal:
        raise ValidationFailed("write_shard needs the empty trained index (train_empty), not a filled one")
    if first_row < 0:
        raise ValidationFailed(f"first_row must be >= 0 (ids are global row numbers), got {first_row}")
    shard = faiss.clone_index(trained)
    rows = np.arange(first_row, first_row + len(vectors), dtype=np.int64)
    for s in range(0, len(vectors), 65536):
        shard.add_with_ids(np.ascontiguousarray(vectors[s:s + 65536], dtype=np.float32), rows[s:s + 65536])
    path.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(path)
    side.unlink(missing_ok=True)  # a crash between the two writes must not leave an older shard's sidecar
    # never rewritten in place: FAISS would truncate a file that open_shards has mapped (SIGBUS in the server); a
    # new file renamed over it leaves a serving process the old one, whole, as merge_on_disk does
    with atomic_path(path) as tmp:
        faiss.write_index(shard, str(tmp))
    record = {"format": SIDECAR_FORMAT, **asdict(_shape(shard)), "first_row": int(first_row),
              "count": len(vectors)}
    write_text_atomic(side, json.dumps(record, indent=1))
    log.info("shard %s: %d vectors from row %d", path.name, len(vectors), first_row)
    return path


def merge_on_disk(trained: Any, shards: list[Path], directory: Path) -> Path:
    """Merge ``shards`` into ``directory``/merged.faiss, its lists in ``merged.<token>.ivfdata`` beside it (read with
    :func:`open_merged`; the two files move together). Shard lists are memory-mapped while merging, not loaded.
    Refuses shards written from another trained index, repeated or overlapping shards (ValidationFailed).

    Merging again into the same directory is safe beside processes serving the old pair: the new lists go to a file
    of their own and ``merged.faiss`` is replaced by one atomic rename, so an open reader keeps its (then unlinked)
    files and answers from them, a new reader gets the old pair or the new one, and a merge that fails or is killed
    leaves the old pair as it was. Merges into one directory take turns (a lock file, ``.merge.lock``): each
    removes the lists files it replaced."""
    faiss = faiss_module()
    from faiss.contrib.ondisk import merge_ondisk

    if not shards:
        raise ValidationFailed("no shards to merge")
    if faiss.try_extract_index_ivf(trained) is None:
        raise ValidationFailed("merge_on_disk needs the empty trained IVF index from train_empty")
    if trained.ntotal:
        raise ValidationFailed(f"merge_on_disk needs the empty trained index (train_empty), not a filled one "
                               f"(it holds {trained.ntotal} vectors): the shards' vectors would be added to those")
    shards = [Path(p) for p in shards]
    index = faiss.clone_index(trained)
    _check(shards, _shape(index), "the trained index")
    directory.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    # FAISS records the lists' path in the .faiss file and open_merged keeps only its file name (same-dir flag), so
    # the lists are written under their final name; only the small .faiss is staged and renamed in
    lists, staged = directory / f"merged.{token}.ivfdata", directory / f".merged.{token}.faiss.tmp"
    # one merge into a directory at a time: a second one's clean-up removed the first one's new lists
    with build_lock(directory, ".merge.lock"):
        try:
            with _progress_to_stderr():
                merge_ondisk(index, [str(p) for p in shards], str(lists))
            faiss.write_index(index, str(staged))
            del index  # unmaps the lists before they are synced
            fsync_file(lists)
            fsync_file(staged)
            os.replace(staged, directory / MERGED)
        except BaseException:
            staged.unlink(missing_ok=True)
            lists.unlink(missing_ok=True)
            raise
        fsync_dir(directory)
        _drop_replaced(directory, lists)
    return directory / MERGED


def _drop_replaced(directory: Path, lists: Path) -> None:
    """Remove the lists files ``lists`` replaced, and what killed merges left. A process that has one mapped keeps
    it (an unlinked file lives on while mapped); the space is freed when the last such process lets go."""
    for p in directory.iterdir():
        old_lists = p.name.startswith("merged.") and p.name.endswith(".ivfdata") and p != lists
        if old_lists or (p.name.startswith(".merged.") and p.name.endswith(".faiss.tmp")):
            p.unlink(missing_ok=True)


def open_merged(path: Path) -> Any:
    """The index written by :func:`merge_on_disk`, for searching only; its lists stay on disk (memory-mapped
    read-only) wherever the pair moved, so a read-only volume or files owned by another user serve as well."""
    faiss = faiss_module()

    if not path.is_file():
        raise ValidationFailed(f"{path} is missing: merge_on_disk writes it")
    try:
        with _progress_to_stderr():  # FAISS prints the lists file's new location
            return faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as e:  # FAISS cannot open the index, or the lists file it names (in its own directory)
        raise ValidationFailed(_open_failure(path, str(e).strip().splitlines()[-1])) from None


def _open_failure(path: Path, said: str) -> str:
    """Why the pair at ``path`` did not open, from FAISS's last error line ``said`` ("could not open FILE in mode r:
    Permission denied"): a file that is there but not readable by this process is not "missing"."""
    found = re.search(r"could not open (.+?) (?:in mode \S+|for reading): (.+)$", said)
    if found is None:
        return f"{path}: cannot be read as a merged index ({said[:300]}); merge_on_disk writes it"
    name, cause = Path(found[1]).name, found[2]
    if "No such file" in cause:
        return f"{path}: its inverted lists file {name} is missing beside it; move the pair together"
    if "Permission denied" in cause:
        return (f"{path}: this process (uid {os.getuid()}) may not read {name} (permission denied): give the user "
                "serving it read access to both files of the pair (write access is not needed)")
    return f"{path}: cannot read {name} ({cause[:200]})"


def open_shards(shards: list[Path], *, mmap: bool = True) -> Any:
    """One searchable index over ``shards`` (each searched, the top-k merged by score; ids are global rows).
    Refuses shards written from another trained index than the first shard's, and repeated or overlapping shards."""
    faiss = faiss_module()

    if not shards:
        raise ValidationFailed("no shards to open")
    shards = [Path(p) for p in shards]
    _check_paths(shards)
    opened = [_read(p, faiss.IO_FLAG_MMAP if mmap else 0) for p in shards]
    _check_group([s for s, _ in opened], opened[0][0].shape, f"the first shard {shards[0]}")
    group = faiss.IndexShards(opened[0][1].d, False, False)  # not threaded (FAISS parallelises inside), ids kept
    for _, part in opened:
        group.add_shard(part)  # faiss's wrapper keeps a reference: shards live as long as the group
    return group


def _check(shards: list[Path], reference: _Shape, what: str) -> None:
    """Refuse ``shards`` unless they are distinct files, written from the quantizer ``reference``, on disjoint rows."""
    faiss = faiss_module()

    _check_paths(shards)
    _check_group([_read(p, faiss.IO_FLAG_MMAP)[0] for p in shards], reference, what)


def _check_paths(shards: list[Path]) -> None:
    """Refuse a shard given twice, under the same or another name (a copy is caught by its rows)."""
    seen: dict[Path, int] = {}
    for i, p in enumerate(shards):
        key = p.resolve()
        if key in seen:
            raise ValidationFailed(f"shard {p} is given twice (positions {seen[key] + 1} and {i + 1}): its items "
                                   "would be counted twice; pass each shard once")
        seen[key] = i


def _check_group(shards: list[_Shard], reference: _Shape, what: str) -> None:
    """Refuse shards whose quantizer is not ``reference`` (that of ``what``), or whose rows overlap."""
    for s in shards:
        _same_quantizer(s, reference, what)
    ranged = sorted((s.rows, s.path) for s in shards if s.rows is not None)
    for (a, a_path), (b, b_path) in zip(ranged, ranged[1:], strict=False):
        if b[0] <= a[1]:
            raise ValidationFailed(
                f"shards {a_path} (rows {a[0]}..{a[1]}) and {b_path} (rows {b[0]}..{b[1]}) overlap: those rows "
                "would be found twice; give each row to one shard (write_shard's first_row) and leave out copies "
                "of a shard")


def _same_quantizer(shard: _Shard, reference: _Shape, what: str) -> None:
    mine = shard.shape
    for field, name in (("d", "dimension d"), ("nlist", "number of lists nlist"), ("code_size", "code size"),
                        ("layout", "index type")):
        if getattr(mine, field) != getattr(reference, field):
            raise ValidationFailed(f"shard {shard.path} does not belong with {what}: its {name} is "
                                   f"{getattr(mine, field)}, not {getattr(reference, field)}; {_REWRITE}")
    if mine.quantizer != reference.quantizer:
        raise ValidationFailed(f"shard {shard.path} was written from another trained quantizer than {what} (same "
                               "d, nlist and code size, but other centroids or codebooks, e.g. another train_empty "
                               f"run): its codes would be decoded with the wrong codebooks; {_REWRITE}")


def _read(path: Path, flags: int) -> tuple[_Shard, Any]:
    """The shard file at ``path`` read with FAISS ``flags``, and what is checked about it, taken from the file itself
    (the sidecar only spares the scan of its ids, and only when it agrees with the file)."""
    faiss = faiss_module()

    if not path.is_file():
        raise ValidationFailed(f"shard {path} does not exist (or is not a file): check the list of shards")
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as e:
        raise ValidationFailed(f"shard {path} is not a readable FAISS index ({str(e).splitlines()[-1][:200]}): "
                               "write it again with write_shard") from None
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        raise ValidationFailed(f"shard {path} is not an IVF index: shards come from write_shard")
    shape = _shape(index)
    count = int(index.ntotal)
    rows = _sidecar_rows(path, shape, count, ivf)
    if rows is None and count:
        rows = _id_range(ivf)
    return _Shard(path, shape, count, rows), index


def _shape(index: Any) -> _Shape:
    """The fingerprint of ``index``'s trained quantizer. Its lists, vector count and nprobe (a search setting) are
    swapped out while it is serialised and put back after, so a shard and its trained index hash alike."""
    faiss = faiss_module()

    ivf = faiss.extract_index_ivf(index)
    lists, own, ntotal, ivf_ntotal, nprobe = ivf.invlists, ivf.own_invlists, index.ntotal, ivf.ntotal, ivf.nprobe
    empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.own_invlists = False  # so replace_invlists keeps the shard's lists alive to be put back
    ivf.replace_invlists(empty, False)
    index.ntotal = ivf.ntotal = 0
    ivf.nprobe = 1
    try:
        digest = hashlib.sha256(faiss.serialize_index(index).tobytes()).hexdigest()
    finally:
        ivf.replace_invlists(lists, own)
        index.ntotal, ivf.ntotal, ivf.nprobe = ntotal, ivf_ntotal, nprobe
    layout = type(ivf).__name__ if index is ivf or type(index) is type(ivf) else \
        f"{type(index).__name__}/{type(ivf).__name__}"
    return _Shape(layout, int(index.d), int(ivf.nlist), int(ivf.code_size), digest)


def _sidecar_rows(path: Path, shape: _Shape, count: int, ivf: Any) -> tuple[int, int] | None:
    """The rows recorded in ``path``'s sidecar, or None when there is none, or it does not describe this file (then
    the ids are read from the file). A spot check of one list guards against a sidecar left beside another file."""
    side = sidecar_path(path)
    if not side.is_file() or not count:
        return None
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
        first, recorded = int(record["first_row"]), int(record["count"])
        agrees = record.get("format") == SIDECAR_FORMAT and recorded == count and \
            all(record.get(k) == v for k, v in asdict(shape).items())
    except (OSError, ValueError, KeyError, TypeError):
        agrees = False
    if agrees:
        sample = _id_range(ivf, first_list_only=True)
        agrees = sample is not None and first <= sample[0] and sample[1] < first + count
    if not agrees:
        log.warning("shard %s: its sidecar %s does not describe it; reading the shard's ids instead", path, side.name)
        return None
    return first, first + count - 1


def _id_range(ivf: Any, *, first_list_only: bool = False) -> tuple[int, int] | None:
    """Smallest and largest id in ``ivf``'s lists (memory-mapped: only the ids are read, not the codes)."""
    faiss = faiss_module()

    lo, hi = None, None
    lists = ivf.invlists
    for no in range(ivf.nlist):
        n = lists.list_size(no)
        if not n:
            continue
        ptr = lists.get_ids(no)
        try:
            ids = faiss.rev_swig_ptr(ptr, n)
            a, b = int(ids.min()), int(ids.max())
        finally:
            lists.release_ids(no, ptr)
        lo, hi = (a, b) if lo is None or hi is None else (min(lo, a), max(hi, b))
        if first_list_only:
            break
    return None if lo is None or hi is None else (lo, hi)


@contextlib.contextmanager
def _progress_to_stderr() -> Iterator[None]:
    """Point stdout, Python's and the C library's (FAISS printf()s "resizing FILE" while merging), at stderr: a
    script's stdout is data. Sent to stderr rather than dropped, so another thread's output in the meantime is kept."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)  # what was printed before goes where it was meant to
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to keep clean
        saved = -1
    try:
        if saved >= 0:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        libc.fflush(None)  # C's buffer is flushed to stderr now, not to the data stream later
        if saved >= 0:
            os.dup2(saved, 1)
            os.close(saved)
