"""Writing generations: full builds and small deltas, each into ``tmp/`` then renamed in and switched to atomically.

A generation is a list of *segments* searched together. A full build writes one segment (``seg0``) with one FAISS
index per modality. A delta generation hard-links the base's ``seg0`` files (no copy, and immune to the base being
pruned) and adds ``seg1``: new and changed items in small exact indexes; base rows those items replace, and items
removed since, are marked dead in ``dead.npy``. Nothing in a served directory is ever modified.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.errors import IndexError_, ValidationFailed
from recsys.files import fsync_dir, fsync_file, write_text_atomic
from recsys.index import layout
from recsys.index.factory import (
    TooFewToTrain,
    graph_order,
    is_lossy,
    make_index,
    normalise,
    relayout,
    sampled_recall,
    size_factory,
    write_index,
)
from recsys.index.layout import Manifest
from recsys.index.locks import write_lock
from recsys.index.meta import META_FILE, ItemMeta

if TYPE_CHECKING:
    from recsys.config import IndexSettings

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
DEAD_FILE = "dead.npy"


class DamagedBase(IndexError_):
    """A delta's base generation has files that differ from its manifest (``files``): read back into the delta they
    would be served with fresh checksums, so the delta is refused (``build_from_catalog`` builds a full one)."""

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


def _checkpoint(name: str) -> None:
    """A named point in a build (a no-op; the crash-safety tests hook it to kill the process there)."""


@dataclass
class SegmentData:
    """Rows of one segment: ids, per-modality vectors (n, d) and the rows that have each modality."""

    item_ids: np.ndarray
    vectors: dict[str, np.ndarray]
    present: dict[str, np.ndarray]


def _validate(item_ids: Sequence[str], vectors: Mapping[str, np.ndarray],
              present: Mapping[str, np.ndarray] | None) -> SegmentData:
    ids = np.array([str(i) for i in item_ids])
    n = len(ids)
    if n and len(np.unique(ids)) != n:
        raise ValidationFailed("item ids given to the index build are not unique")
    if "fused" not in vectors:
        raise ValidationFailed(f"index build needs a 'fused' modality, got {sorted(vectors)}")
    dims = {m: (v.shape[1] if v.ndim == 2 else -1) for m, v in vectors.items()}
    if len(set(dims.values())) != 1 or -1 in dims.values():
        raise ValidationFailed(f"every modality must be an (n, d) matrix of one dimension d, got {dims}")
    out_v: dict[str, np.ndarray] = {}
    out_p: dict[str, np.ndarray] = {}
    for m, v in vectors.items():
        if len(v) != n:
            raise ValidationFailed(f"modality {m!r} has {len(v)} rows for {n} item ids")
        p = np.ones(n, bool) if present is None or m not in present else np.asarray(present[m], dtype=bool)
        if p.shape != (n,):
            raise ValidationFailed(f"present[{m!r}] must be a bool array of {n} rows")
        v = np.asarray(v, dtype=np.float32)
        bad = np.flatnonzero(p & ~np.isfinite(v).all(axis=1)) if n else np.empty(0, int)
        if len(bad):  # name the items: a damaged snapshot or a NaN head shows as a handful of rows
            raise ValidationFailed(
                f"modality {m!r} has non-finite vectors for {len(bad)} item(s), e.g. "
                f"{', '.join(repr(str(i)) for i in ids[bad[:5]])}: the vectors snapshot is damaged; `recsys embed` (or "
                "`recsys build`) writes it again")
        out_v[m], out_p[m] = normalise(v), p
    return SegmentData(ids, out_v, out_p)


def _write_segment(seg_dir: Path, data: SegmentData, settings: IndexSettings, factory: str | None,
                   progress: Progress | None) -> dict[str, Any]:
    """Indexes, vectors and row maps of one segment; returns its manifest entry."""
    seg_dir.mkdir(parents=True)
    np.save(seg_dir / "ids.npy", data.item_ids)
    mods: dict[str, Any] = {}
    for i, (m, vec) in enumerate(data.vectors.items()):
        rows = np.flatnonzero(data.present[m]).astype(np.int64)
        sub = np.ascontiguousarray(vec[rows]) if len(rows) != len(vec) else vec
        if progress:
            progress("index", i, len(data.vectors))
        index, fac = _modality_index(m, sub, factory, settings)
        order = graph_order(index)
        if order is not None and relayout(index, order):  # HNSW in graph order: rows and vectors follow it
            sub, rows = sub[order], rows[order]
        write_index(index, seg_dir / f"{m}.faiss")  # a full disk: OSError, as np.save's
        np.save(seg_dir / f"{m}.vectors.npy", sub)
        np.save(seg_dir / f"{m}.rows.npy", rows)
        recall = sampled_recall(index, sub, settings) if len(sub) else 1.0
        mods[m] = {"factory": fac, "count": int(len(sub)), "lossy": is_lossy(index), "recall_at_10": round(recall, 4),
                   **({"requested": factory} if factory else {})}  # what a later build compares its setting with
        log.info("index %s/%s: %s over %d vectors, sampled recall@10 %.3f", seg_dir.name, m, fac, len(sub), recall)
        _checkpoint(f"index_written:{m}")
        if progress:
            progress("index", i + 1, len(data.vectors))  # modalities done (the last one says the stage finished)
    return {"name": seg_dir.name, "count": int(len(data.item_ids)), "modalities": mods}


def _modality_index(modality: str, sub: np.ndarray, forced: str | None, settings: IndexSettings) -> tuple[Any, str]:
    """The filled index of one modality and its factory: ``forced`` where these vectors can train it, else the
    size-based choice (a forced IVF1024 cannot train on the 300 items that have a photo; the others keep it)."""
    auto = size_factory(len(sub), sub.shape[1], settings) if len(sub) else "Flat"
    fac = forced if forced and len(sub) else auto
    try:
        try:
            return make_index(sub, fac, settings), fac
        except TooFewToTrain:
            if fac == auto:
                raise
            log.warning("index %s: %d vectors are too few to train the configured factory %r; this modality uses "
                        "%r instead", modality, len(sub), fac, auto)
            return make_index(sub, auto, settings), auto
    except ValidationFailed as e:  # every modality is built with the factory: say which one failed
        raise ValidationFailed(f"index of modality {modality!r}: {e.message}") from None


def _finish(root: Path, work: Path, manifest: Manifest, *, settings: IndexSettings, store: Any | None,
            make_current: bool, started: float, inherited: Mapping[str, tuple[str, int | None]] | None = None,
            rebase: layout.Rebase | None = None) -> Manifest:
    """Checksum and fsync every file, write the manifest last, rename the directory in, switch (caught up per
    ``rebase``: :func:`layout.switch`), prune. Files linked from a delta's base keep the (checksum, size) it recorded
    (``inherited``, by name here): a base file damaged since fails the new generation's verification too."""
    files: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for p in sorted(work.rglob("*")):
        if p.is_file():
            name = str(p.relative_to(work))
            fsync_file(p)  # a linked file's pages are clean already; a copied one (no hard links) is not
            if inherited and name in inherited:
                files[name], size = inherited[name]
                sizes[name] = p.stat().st_size if size is None else size
                continue
            files[name], sizes[name] = layout.sha256_file(p), p.stat().st_size
    for d in sorted({p.parent for p in work.rglob("*")} | {work}):
        fsync_dir(d)
    manifest.files, manifest.sizes, manifest.checksum = files, sizes, layout.checksum_of(files)
    manifest.build_seconds = round(time.perf_counter() - started, 3)
    manifest.manifest_checksum = layout.manifest_checksum(manifest.to_dict())  # an edited field shows in verify
    write_text_atomic(work / layout.MANIFEST, _json(manifest.to_dict()))
    _checkpoint("manifest_written")
    final = layout.generations_dir(root) / manifest.generation_id
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(work, final)
    fsync_dir(final.parent)
    _checkpoint("renamed")
    if make_current:
        layout.switch(root, manifest.generation_id, rebase)
        _checkpoint("switched")
        layout.prune(root, settings.keep_generations)
    else:
        layout.hold(root, manifest.generation_id)
    if store is not None:
        _record_artifact(store, manifest, final)
    return manifest


@contextlib.contextmanager
def _cleaned_on_failure(root: Path) -> Iterator[None]:
    """Leftovers of an earlier killed build removed first; a write that fails (a full disk) removes this build's
    partial files too, so the space is free for the next command, and says so instead of a traceback. The served
    generation is never touched until the last step switches to the new one."""
    layout.clean_tmp(root)
    try:
        yield
    except OSError as e:
        layout.clean_tmp(root)
        free = shutil.disk_usage(root).free if root.exists() else 0
        raise IndexError_(f"writing an index generation under {root} failed ({e.strerror or e}; {free / 2**20:,.0f} "
                          f"MB free there); its partial files were removed and {layout.current_id(root) or 'nothing'} "
                          "is still served. Free space and run the build again") from e


def _prepare(item_ids: Sequence[str], vectors: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray] | None,
             meta: ItemMeta | None) -> tuple[SegmentData, ItemMeta]:
    """Validated segment data and metadata aligned with it (none given: ids only)."""
    data = _validate(item_ids, vectors, present)
    meta = meta if meta is not None else ItemMeta.build(data.item_ids.tolist())
    if meta.item_ids.tolist() != data.item_ids.tolist():
        raise ValidationFailed("metadata rows must be aligned with item_ids")
    return data, meta


def build_generation(
    root: Path,
    item_ids: Sequence[str],
    vectors: Mapping[str, np.ndarray],
    *,
    encoder_id: str,
    watermark: str = "",
    meta: ItemMeta | None = None,
    present: Mapping[str, np.ndarray] | None = None,
    factory: str | None = None,
    settings: IndexSettings | None = None,
    store: Any | None = None,
    progress: Progress | None = None,
    make_current: bool = True,
    rebase: layout.Rebase | None = None,
) -> Manifest:
    """Write a full generation under ``root`` and (by default) make it current (see :class:`layout.Rebase`).

    ``vectors`` maps a modality ("fused" required; "text", "image"...) to (n, d) float32 rows aligned with
    ``item_ids``; ``present[m]`` (bool, n) marks rows that have modality ``m`` (e.g. items with an image).
    ``meta`` holds the filterable fields (default: none). ``factory`` (default ``settings.factory``) overrides the
    size-based index choice for every modality with enough vectors to train it; the others keep the size-based one.
    ``watermark`` names the source state (e.g. the newest ``updated_at``). With ``store``, an
    ``Artifact(kind="index")`` row records the generation.
    """
    settings = settings or _default_settings()
    root = Path(root)
    started = time.perf_counter()
    data, meta = _prepare(item_ids, vectors, present, meta)
    with write_lock(root, "build an index generation"), _cleaned_on_failure(root):
        gid = layout.new_generation_id()
        work = layout.tmp_dir(root) / f"{gid}.partial"
        work.mkdir(parents=True)
        _checkpoint("started")
        seg = _write_segment(work / "seg0", data, settings, factory or settings.factory, progress)
        meta.save(work / META_FILE)
        np.save(work / DEAD_FILE, np.zeros(len(data.item_ids), bool))
        _checkpoint("meta_written")
        manifest = Manifest(
            generation_id=gid, encoder_id=encoder_id, dim=int(data.vectors["fused"].shape[1]),
            item_count=int(len(data.item_ids)), factory=seg["modalities"]["fused"]["factory"], watermark=watermark,
            created_at=datetime.now(UTC).isoformat(), modalities=list(data.vectors),
            recall_at_10={m: v["recall_at_10"] for m, v in seg["modalities"].items()},
            segments=[{**seg, "origin": gid}])
        return _finish(root, work, manifest, settings=settings, store=store, make_current=make_current,
                       started=started, rebase=rebase)


def build_delta_generation(
    root: Path,
    item_ids: Sequence[str],
    vectors: Mapping[str, np.ndarray],
    *,
    encoder_id: str,
    watermark: str = "",
    meta: ItemMeta | None = None,
    present: Mapping[str, np.ndarray] | None = None,
    removed: Sequence[str] = (),
    base: str | None = None,
    settings: IndexSettings | None = None,
    store: Any | None = None,
    make_current: bool = True,
    rebase: layout.Rebase | None = None,
) -> Manifest:
    """A new generation = ``base`` (default: the current one) + new/changed items - ``removed`` items, without
    rebuilding the base index. ``item_ids``/``vectors``/``present``/``meta`` describe only the new or changed items.
    A previous delta on ``base`` is merged into the new one, so a chain of deltas stays two segments. The base's
    files read back (metadata, dead rows, its delta segment) are checked against its checksums first: DamagedBase."""
    settings = settings or _default_settings()
    root = Path(root)
    started = time.perf_counter()
    data, meta = _prepare(item_ids, vectors, present, meta)
    with write_lock(root, "build an index generation"), _cleaned_on_failure(root):
        base_dir = layout.generation_path(root, base)
        bm = layout.read_manifest(base_dir)
        layout.check_compatible(bm, encoder_id=encoder_id, dim=int(data.vectors["fused"].shape[1]), where=base_dir)
        if set(data.vectors) != set(bm.modalities):
            raise ValidationFailed(f"delta modalities {sorted(data.vectors)} differ from the base's {bm.modalities}")
        _check_reread(base_dir, bm)
        gid = layout.new_generation_id()
        work = layout.tmp_dir(root) / f"{gid}.partial"
        work.mkdir(parents=True)
        _checkpoint("started")
        seg0 = bm.segments[0]
        _link_tree(base_dir / seg0["name"], work / "seg0")
        n0 = seg0["count"]
        base_meta = ItemMeta.load(base_dir / META_FILE)
        base_dead = np.load(base_dir / DEAD_FILE)
        # merge the previous delta (if any) with the new changes: the newer row of an id wins
        old = _read_segment(base_dir / bm.segments[1]["name"]) if len(bm.segments) > 1 else None
        changed = set(data.item_ids.tolist())
        gone = set(map(str, removed))
        if old is not None:
            # rows dead in the base (replaced or removed before) are dropped, not carried over
            keep = np.array([i not in changed for i in old.item_ids.tolist()], dtype=bool) & ~base_dead[n0:]
            old_meta = base_meta.take(np.arange(n0, n0 + len(old.item_ids))[keep])
            data = SegmentData(np.concatenate([old.item_ids[keep], data.item_ids]),
                               {m: np.concatenate([old.vectors[m][keep], data.vectors[m]]) for m in data.vectors},
                               {m: np.concatenate([old.present[m][keep], data.present[m]]) for m in data.vectors})
            meta = ItemMeta.concat([old_meta, meta])
        seg1 = _write_segment(work / "seg1", data, settings, "Flat", None)
        ids0 = base_meta.item_ids[:n0]
        dead0 = base_dead[:n0] | np.isin(ids0, np.array(sorted(changed | gone), dtype=object))
        dead1 = np.isin(data.item_ids.astype(object), np.array(sorted(gone), dtype=object))
        np.save(work / DEAD_FILE, np.concatenate([dead0, dead1]))
        ItemMeta.concat([base_meta.take(np.arange(n0)), meta]).save(work / META_FILE)
        _checkpoint("meta_written")
        live = int((~dead0).sum() + (~dead1).sum())
        manifest = Manifest(
            generation_id=gid, encoder_id=encoder_id, dim=bm.dim, item_count=live, factory=bm.factory,
            watermark=watermark, created_at=datetime.now(UTC).isoformat(), modalities=bm.modalities,
            recall_at_10=bm.recall_at_10, segments=[seg0, {**seg1, "origin": gid}], kind="delta",
            base_generation=seg0.get("origin", bm.generation_id))
        base = f"{seg0['name']}/"  # its files are linked as seg0/...
        linked = {f"seg0/{n.removeprefix(base)}": (digest, bm.sizes.get(n)) for n, digest in bm.files.items()
                  if n.startswith(base)}
        return _finish(root, work, manifest, settings=settings, store=store, make_current=make_current,
                       started=started, inherited=linked, rebase=rebase)


def reread_files(bm: Manifest) -> list[str]:
    """The files of generation ``bm`` that a delta over it reads back and writes with fresh checksums (and that the
    diff against it reads): metadata, dead rows, its delta segment."""
    seg1 = f"{bm.segments[1]['name']}/" if len(bm.segments) > 1 else None
    return [META_FILE, DEAD_FILE, *(n for n in bm.files if seg1 and n.startswith(seg1))]


def _check_reread(base_dir: Path, bm: Manifest) -> None:
    """What a delta reads back must be what the base was built with: hashed now, whatever the hashing budget."""
    bad = layout.damaged(base_dir, bm, reread_files(bm))
    if bad:
        raise DamagedBase(f"index generation {bm.generation_id} is damaged ({', '.join(bad[:5])} missing or changed "
                          "since it was built): no delta is built on it. `recsys index build --full` builds a new one",
                          bad)


def _read_segment(seg_dir: Path) -> SegmentData:
    ids = np.load(seg_dir / "ids.npy")
    vecs: dict[str, np.ndarray] = {}
    pres: dict[str, np.ndarray] = {}
    for f in sorted(seg_dir.glob("*.vectors.npy")):
        m = f.name[: -len(".vectors.npy")]
        rows = np.load(seg_dir / f"{m}.rows.npy")
        sub = np.load(f)
        full = np.zeros((len(ids), sub.shape[1]), np.float32)
        full[rows] = sub
        p = np.zeros(len(ids), bool)
        p[rows] = True
        vecs[m], pres[m] = full, p
    return SegmentData(ids, vecs, pres)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into ``dst`` (copy where links are impossible, e.g. across devices)."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        try:
            os.link(p, dst / p.name)
        except OSError:
            shutil.copy2(p, dst / p.name)


def _record_artifact(store: Any, manifest: Manifest, path: Path) -> None:
    from recsys.store.tables import Artifact

    slim = {k: v for k, v in manifest.to_dict().items() if k != "files"}
    try:
        with store.session() as s:
            s.add(Artifact(kind="index", version=manifest.generation_id, path=str(path.resolve()), manifest=slim))
    except Exception:  # the generation is already served; a bookkeeping failure must not undo it
        log.exception("could not record index generation %s in the store", manifest.generation_id)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def _default_settings() -> IndexSettings:
    from recsys.config import IndexSettings

    return IndexSettings()
