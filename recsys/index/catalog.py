"""Glue from the store and the encoders to index generations: what ``recsys index build`` runs.

``build_from_catalog`` decides between nothing to do (the catalogue did not change since the served generation),
a delta generation (a few items new, changed or removed) and a full rebuild (first build, another encoder,
``--full``, a configured factory other than the served generation's, or changes beyond ``delta_max_fraction`` of
the catalogue). A damaged current generation (hashed as a load hashes it) is neither a delta's base nor "up to
date": a full build, the report says why. A generation published while the catalogue was read (an API upsert's
delta) is not dropped by the switch: what changed since is added as a delta (:class:`recsys.index.layout.Rebase`).
A full build that would drop most of the served generation's items, which the database does not know at all, is
refused unless forced (:class:`StoreMismatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from recsys.errors import IncompatibleArtifact, NoIndex, NotFound
from recsys.index import layout
from recsys.index.build import DEAD_FILE, DamagedBase, build_delta_generation, build_generation, reread_files
from recsys.index.factory import check_factory
from recsys.index.locks import build_lock, check_writable
from recsys.index.meta import META_FILE, ItemMeta
from recsys.index.pairing import drop_stale_pending

if TYPE_CHECKING:
    import pandas as pd

    from recsys.config import Settings

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]


class ItemVectorsLike(Protocol):
    """What the encoders package hands over (``recsys.encoders.load_item_vectors``)."""

    item_ids: list[str]
    fused: np.ndarray
    text: np.ndarray
    image: np.ndarray
    has_image: np.ndarray
    encoder_id: str


VectorProvider = Callable[["Settings", Any], ItemVectorsLike]


def index_root(settings: Settings) -> Path:
    """Where generations live: ``$RECSYS_HOME/index``."""
    return Path(settings.home) / "index"


@dataclass
class _Change:
    changed: list[str]
    removed: list[str]
    base_live: int


def _diff(root: Path, cur: layout.Manifest, meta: ItemMeta) -> _Change:
    """Items new or changed (updated_at, content hash or vectors differ) and items gone, against generation ``cur``
    (one built before vectors were fingerprinted finds every item changed: rebuilt once)."""
    gdir = layout.generations_dir(root) / cur.generation_id
    old = ItemMeta.load(gdir / META_FILE)
    dead = np.load(gdir / DEAD_FILE)
    live = np.flatnonzero(~dead)
    before = {i: (old.updated_at[r], old.content_hash[r]) for i, r in zip(old.item_ids[live].tolist(), live.tolist(),
                                                                           strict=True)}
    now = dict(zip(meta.item_ids.tolist(), zip(meta.updated_at.tolist(), meta.content_hash.tolist(), strict=True),
                   strict=True))
    changed = [i for i, v in now.items() if before.get(i) != v]
    removed = [i for i in before if i not in now]
    return _Change(changed, removed, len(before))


@dataclass
class _Snapshot:
    """The catalogue as one build reads it: metadata, vectors per modality and the rows that have each."""

    meta: ItemMeta
    mats: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    encoder_id: str
    watermark: str
    without_vectors: int
    known: np.ndarray
    """Every item id the store holds: live, hidden, deleted or without vectors."""

    def fits(self, m: layout.Manifest) -> bool:
        """Whether a delta over generation ``m`` can hold these vectors."""
        dim = int(self.mats["fused"].shape[1])
        return m.encoder_id == self.encoder_id and m.dim == dim and set(m.modalities) == set(self.mats)


def _read_snapshot(store: Any, settings: Settings, vectors: VectorProvider, progress: Progress | None) -> _Snapshot:
    from recsys.store.queries import items_frame

    with store.session() as s:
        df = items_frame(s, include_removed=True)
    known = df["item_id"].astype(str).to_numpy()
    # hidden items stay indexed: every query excludes them (the removed items, the lexical SQL), so an unhide acts
    # at once and a hidden item's page still finds similar items; deleted ones go
    df = df[~df["deleted"].astype(bool)]
    if progress:
        progress("reading vectors", 0, len(df))
    iv = vectors(settings, store)
    if progress:
        progress("reading vectors", len(df), len(df))
    pos = {str(i): r for r, i in enumerate(iv.item_ids)}
    have = df["item_id"].astype(str).isin(pos)
    if (~have).any():
        log.warning("%d live items have no vectors yet and are left out of the index (e.g. %s): `recsys embed` "
                    "and a build index them", int((~have).sum()), df.loc[~have, "item_id"].head(5).tolist())
    df = _as_embedded(df[have].copy(), pos, getattr(iv, "content_hash", None))
    meta = ItemMeta.from_frame(df)
    rows = np.array([pos[i] for i in meta.item_ids.tolist()], dtype=np.int64)
    mats = {"fused": iv.fused[rows], "text": iv.text[rows], "image": iv.image[rows]}
    # what an item's indexed row stands for is its content and its vectors: text fields, modality weights, a
    # generated description or a new photo behind the same path change the vectors and not the content hash
    meta.content_hash[:] = [f"{h}|{d}" for h, d in zip(meta.content_hash.tolist(), vector_digests(mats), strict=True)]
    present = {"image": np.asarray(iv.has_image, bool)[rows],
               "text": _nonzero(mats["text"]), "fused": _nonzero(mats["fused"])}
    newest = max((str(u) for u in meta.updated_at if u is not None), default="")
    return _Snapshot(meta, mats, present, iv.encoder_id, f"{newest}|{len(meta)}", int((~have).sum()), known)


def _default_vectors(settings: Settings, store: Any) -> ItemVectorsLike:
    # encoders sit inward of the index: a plain import (lazy, as torch comes with it). The whole snapshot, not only
    # the store's items: an item written after the last embed (by another writer while this one embedded) is the
    # next run's to index, not an error that fails this one
    from recsys.encoders import load_item_vectors

    return load_item_vectors(settings)  # type: ignore[no-any-return]


def build_from_catalog(store: Any, settings: Settings, progress: Progress | None = None, *,
                       mode: str = "auto", factory: str | None = None,
                       vectors: VectorProvider | None = None, switch: bool = True,
                       force: bool = False) -> dict[str, Any]:
    """Index the store's items that are not deleted (hidden ones too: queries exclude them) with the encoder's
    vectors. Without ``switch`` the new generation is written and not served (``recsys build`` serves it with the
    ranker trained on it, through :func:`layout.publish` with :func:`rebase_for` of this report).

    ``mode``: "auto" (skip / delta / full as above), "full" or "delta". ``vectors`` replaces
    ``recsys.encoders.load_item_vectors`` (tests, custom pipelines). Returns a report: action (skipped, delta,
    full), generation id (the one served, with ``switch``), item count, recall@10 per modality, seconds, ``base``
    (the generation served when the catalogue was read), ``reason`` when a delta or skip was impossible, and
    ``caught_up`` when another generation was published meanwhile and a delta carried its changes over.

    A full build over a served generation whose items the database mostly does not know (another deployment's
    database, or an empty one) raises :class:`StoreMismatch` before anything is written, unless ``force``. With
    ``switch``, a stale ``PENDING`` (its build is not running) is dropped first (:mod:`recsys.index.pairing`).
    """
    if mode not in ("auto", "full", "delta"):
        raise ValueError(f"mode must be auto, full or delta, not {mode!r}")
    vectors = vectors or _default_vectors
    wanted = factory or settings.index.factory
    if wanted:  # a typo is refused now, not after every vector was read
        check_factory(wanted, settings.index)
    root = index_root(settings)
    check_writable(root, "build an index generation")  # a read-only data directory: said before reading vectors
    if switch:  # left by a killed `recsys build`, it would hold its unserved generation from pruning for good
        drop_stale_pending(root, Path(settings.home))
    base = layout.current_id(root)  # read first: a generation published after this is caught up at the switch
    snap = _read_snapshot(store, settings, vectors, progress)
    report: dict[str, Any] = {}
    rebase = layout.Rebase(base, _catch_up(store, settings, vectors, report)) if switch else None
    ch, reason = _plan(root, snap, base, mode, settings, wanted)
    if ch is not None and not ch.changed and not ch.removed:
        log.info("index generation %s is up to date", base)
        _tidy(root, settings.index.keep_generations)
        return {"action": "skipped", "generation": base, "items": ch.base_live, "base": base}
    m = None
    if ch is not None and base is not None:
        try:
            m = _delta(root, snap, ch, base, settings, store, switch, rebase)
        except DamagedBase as e:  # damaged since it was checked
            reason = f"index generation {base} is damaged ({', '.join(e.files[:5])} missing or changed)"
        except NotFound:
            reason = f"index generation {base} was pruned while the catalogue was read"
        if reason:
            log.warning("%s; building a full generation instead", reason)
    if m is None and base is not None and not force:
        _refuse_foreign_store(root, base, snap, store, settings)
    if m is None:
        m = build_generation(root, snap.meta.item_ids.tolist(), snap.mats, encoder_id=snap.encoder_id,
                             watermark=snap.watermark, meta=snap.meta, present=snap.present, factory=factory,
                             settings=settings.index, store=store, progress=progress, make_current=switch,
                             rebase=rebase)
    caught = dict(report)  # a catch-up's generation (the one served), its items and counts
    report.clear()
    report.update({"action": m.kind, "generation": m.generation_id, "items": m.item_count, "factory": m.factory,
                   "recall_at_10": m.recall_at_10, "seconds": m.build_seconds, "without_vectors": snap.without_vectors,
                   "base": base, **({"reason": reason} if reason else {}), **caught})
    return report


def _tidy(root: Path, keep: int) -> None:
    """What every build leaves behind it, also one with nothing to build: a killed build's partial files removed and
    old generations pruned, under the build lock; left to that build when another one holds the lock now."""
    from filelock import Timeout

    try:
        with build_lock(root, timeout=0):
            layout.clean_tmp(root)
            layout.prune(root, keep)
    except Timeout:
        log.debug("another build holds %s: it removes leftovers and prunes itself", root / "build.lock")


def _plan(root: Path, snap: _Snapshot, base: str | None, mode: str, settings: Settings,
          wanted: str | None) -> tuple[_Change | None, str | None]:
    """The changes against ``base`` when a delta (or nothing) will do, else None; and why a full build when a delta
    or a skip was not possible for the base itself (damaged, unreadable) or in "auto" when the factory ``wanted``
    (``--factory`` or ``RECSYS_INDEX__FACTORY``) is not the one the base was built with."""
    if mode == "full":
        return None, None
    if base is None:
        if mode == "delta":
            log.warning("no generation to apply a delta to; doing a full build")
        return None, None
    reason = _unusable_base(root, base, settings.index.verify_on_load_mb)
    if reason is not None:
        log.warning("%s; building a full generation", reason)
        return None, reason
    cur = layout.read_manifest(layout.generation_path(root, base))
    if not snap.fits(cur):
        if mode == "delta":
            log.warning("current generation was built with another encoder or dimension; doing a full build")
        return None, None
    built = _built_factory(cur)
    if mode == "auto" and wanted and wanted != built:  # unset (automatic), it never forces a rebuild
        reason = f"the configured index factory {wanted!r} is not generation {base}'s ({built!r})"
        log.warning("%s; building a full generation", reason)
        return None, reason
    ch = _diff(root, cur, snap.meta)
    small = len(ch.changed) + len(ch.removed) <= settings.index.delta_max_fraction * max(ch.base_live, 1)
    return (ch if mode == "delta" or small else None), None


def _built_factory(m: layout.Manifest) -> str:
    """The factory generation ``m``'s base was built for: the one configured then, where one was (a modality with
    too few vectors for it fell back to the size-based choice: not a reason to rebuild), else the one chosen."""
    fused = m.segments[0].get("modalities", {}).get("fused", {}) if m.segments else {}
    return str(fused.get("requested") or m.factory)


def _refuse_foreign_store(root: Path, base: str, snap: _Snapshot, store: Any, settings: Settings) -> None:
    """StoreMismatch when the database does not know (neither live, hidden nor deleted) more than half of the items
    generation ``base`` serves (one of ``MIN_SAMPLE`` items or more): publishing would replace every replica's
    catalogue with this database's."""
    import pandas as pd

    from recsys.config import without_password
    from recsys.index.store_match import MIN_SAMPLE, StoreMismatch, served_ids

    served = served_ids(root, base)
    if served is None:  # unreadable: nothing to keep, the build replaces it
        return
    unknown = served[~pd.Series(served).isin(snap.known).to_numpy()]
    if len(served) < MIN_SAMPLE or 2 * len(unknown) <= len(served):
        return
    url = without_password(str(getattr(store, "url", settings.db_url)))
    raise StoreMismatch(
        f"RECSYS_DATABASE_URL and RECSYS_HOME look mismatched: this database does not know {len(unknown)} of the "
        f"{len(served)} items the served generation indexes (e.g. {', '.join(unknown[:3].tolist())}), and a full "
        f"build would replace it, for every replica, with its {len(snap.meta)} items; nothing was published. Data "
        f"directory: {Path(settings.home).absolute()} (generation {base}); database: {url}. Check that both name "
        "the same deployment (servers, workers and jobs must share the two). If this database's catalogue really "
        "is meant to replace the served one, publish it with `recsys index build --force` (or `recsys build "
        "--force`)")


def _delta(root: Path, snap: _Snapshot, ch: _Change, base: str, settings: Settings, store: Any, switch: bool,
           rebase: layout.Rebase | None) -> layout.Manifest:
    """The changes ``ch`` written as a delta over generation ``base``."""
    sel = np.flatnonzero(np.isin(snap.meta.item_ids, np.array(ch.changed, dtype=object)))
    m = build_delta_generation(
        root, snap.meta.item_ids[sel].tolist(), {k: v[sel] for k, v in snap.mats.items()},
        encoder_id=snap.encoder_id, watermark=snap.watermark, meta=snap.meta.take(sel),
        present={k: v[sel] for k, v in snap.present.items()}, removed=ch.removed, base=base,
        settings=settings.index, store=store, make_current=switch, rebase=rebase)
    log.info("delta generation %s over %s: %d new or changed, %d removed", m.generation_id, base, len(ch.changed),
             len(ch.removed))
    return m


def _catch_up(store: Any, settings: Settings, vectors: VectorProvider,
              report: dict[str, Any]) -> Callable[[str], str | None]:
    """:attr:`layout.Rebase.catch_up`: a delta over a generation just built with what changed in the store since its
    snapshot, read now, under the build lock (so no other generation is published meanwhile), recorded in
    ``report``. Only runs when another generation was published during the build (rare: no cost otherwise)."""

    def run(gid: str) -> str | None:
        root = index_root(settings)
        snap = _read_snapshot(store, settings, vectors, None)
        built = layout.read_manifest(layout.generation_path(root, gid))
        if not snap.fits(built):
            log.warning("the vectors changed encoder while generation %s was built: it is served as built; "
                        "`recsys index build` indexes the changes since", gid)
            return None
        ch = _diff(root, built, snap.meta)
        if not ch.changed and not ch.removed:
            return None
        m = _delta(root, snap, ch, gid, settings, store, True, None)
        report.update({"generation": m.generation_id, "items": m.item_count,
                       "caught_up": {"over": gid, "changed": len(ch.changed), "removed": len(ch.removed)}})
        return m.generation_id

    return run


def rebase_for(store: Any, settings: Settings, report: dict[str, Any],
               vectors: VectorProvider | None = None) -> layout.Rebase:
    """How to publish the generation of ``report`` (from ``build_from_catalog(switch=False)``) keeping what was
    published since it read the catalogue (:func:`layout.publish`); the catch-up is recorded in ``report``."""
    return layout.Rebase(report.get("base"), _catch_up(store, settings, vectors or _default_vectors, report))


def _unusable_base(root: Path, cur_id: str, budget_mb: float) -> str | None:
    """Why generation ``cur_id`` cannot be the base of a delta (nor be "up to date"), or None: unreadable, or a file
    missing or changed (hashed as a load does, up to ``budget_mb``; above it sizes, and what a delta reads back)."""
    try:
        path = layout.generation_path(root, cur_id)
        m = layout.read_manifest(path)
    except (IncompatibleArtifact, NotFound, NoIndex) as e:  # unreadable, or CURRENT names a generation that is gone
        return f"the current index generation cannot be read ({e})"
    reread = reread_files(m)
    bad = layout.damaged(path, m, reread) or layout.damaged(path, m, [n for n in m.files if n not in reread],
                                                             budget_mb=budget_mb, trust_loads=True)
    if bad:
        return f"index generation {cur_id} is damaged ({', '.join(bad[:5])} missing or changed)"
    return None


def vector_digests(mats: dict[str, np.ndarray], chunk: int = 16_384) -> list[str]:
    """A fingerprint of each row's vectors, every modality bit for bit (a random linear hash of the float32 bit
    patterns in wrapping 64-bit integers: exact, the same on every machine, and a few seconds at 10M rows)."""
    rng = np.random.default_rng(20261206)
    n = len(next(iter(mats.values())))
    out = np.zeros(n, dtype=np.uint64)
    for name in sorted(mats):
        m = np.ascontiguousarray(mats[name], dtype=np.float32)
        weights = rng.integers(1, 2**63, size=m.shape[1], dtype=np.uint64) | np.uint64(1)
        for a in range(0, n, chunk):
            bits = m[a:a + chunk].view(np.uint32).astype(np.uint64)
            out[a:a + chunk] = out[a:a + chunk] * np.uint64(1_000_003) + (bits * weights).sum(axis=1, dtype=np.uint64)
    return [f"{x:016x}" for x in out.tolist()]


def _as_embedded(df: pd.DataFrame, pos: dict[str, int], hashes: list[str] | None) -> pd.DataFrame:
    """``df`` with each item's content hash as its vectors were made: an item changed after the last embed keeps
    the hash its vectors stand for, so the next run finds it changed and indexes it again (with the store's hash
    its stale vectors would look current for good)."""
    if hashes is not None and len(df):
        embedded = [hashes[pos[str(i)]] or h for i, h in zip(df["item_id"], df["content_hash"], strict=True)]
        stale = int(sum(a != b for a, b in zip(embedded, df["content_hash"], strict=True)))
        if stale:
            log.info("%d item(s) changed after the last embed: indexed as embedded, again on the next run", stale)
        df["content_hash"] = embedded
    return df


def _nonzero(v: np.ndarray) -> np.ndarray:
    """Rows that hold a vector: not all zeros (a missing modality). A row with NaN counts as present, so the build's
    finite check names it instead of the item silently leaving the index."""
    return np.asarray(np.linalg.norm(v, axis=1) != 0)
