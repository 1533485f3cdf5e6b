"""Generations on disk: layout, manifest, the ``CURRENT`` pointer, listing, rollback and pruning.

::

    ROOT/
      CURRENT                   name of the served generation (replaced atomically with os.replace)
      PENDING                   one a build serves later with its ranker (:mod:`recsys.index.pairing`)
      generations/<id>/         complete generations only: manifest.json is written last, then the directory
                                is renamed in from tmp/
      tmp/<id>.partial/         a build in progress (or killed): never listed, removed by the next build
      build.lock                one build (or rollback) at a time

A generation directory is immutable once renamed into ``generations/``. A build killed at any point leaves at worst a
``tmp/`` directory behind; the pointer only ever names a complete generation.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.errors import IncompatibleArtifact, IndexError_, NoIndex, NotFound
from recsys.files import fsync_dir, write_text_atomic
from recsys.index.digests import checksum_of, manifest_checksum, verified_hash
from recsys.index.digests import sha256_file as sha256_file  # re-exported: callers look for it here
from recsys.index.locks import build_lock as build_lock  # re-exported: callers take it from here
from recsys.index.locks import unwritable, write_lock
from recsys.index.pairing import PENDING as PENDING  # re-exported: the name callers and tests look for here
from recsys.index.pairing import RankerFit, pending_id, refuse_unrankable
from recsys.index.pairing import hold as hold  # re-exported: build.py holds a generation through here
from recsys.index.servable import QueryEncoder as QueryEncoder  # re-exported: rollback's argument
from recsys.index.servable import refuse_unservable

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
POINTER = "CURRENT"


@dataclass
class Manifest:
    """What a generation holds and how it was made. ``segments`` lists the parts searched together (one for a full
    build; the base plus a small exact delta after :func:`~recsys.index.build.build_delta_generation`)."""

    generation_id: str
    encoder_id: str
    dim: int
    item_count: int
    factory: str
    watermark: str
    created_at: str
    metric: str = "inner_product"
    modalities: list[str] = field(default_factory=list)
    recall_at_10: dict[str, float] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "full"
    base_generation: str | None = None
    checksum: str = ""
    files: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # bytes per file: a truncation seen without hashing
    build_seconds: float = 0.0
    format_version: int = FORMAT_VERSION
    manifest_checksum: str = ""  # over every other field (:func:`manifest_checksum`); "" before it was recorded

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def new_generation_id() -> str:
    """Sortable by creation time, unique across processes."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


def generations_dir(root: Path) -> Path:
    return Path(root) / "generations"


def tmp_dir(root: Path) -> Path:
    return Path(root) / "tmp"


def read_manifest(gen_dir: Path) -> Manifest:
    try:
        return Manifest.from_dict(json.loads((gen_dir / MANIFEST).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise NoIndex(f"{gen_dir} is not a complete index generation (no {MANIFEST})") from None
    except (ValueError, TypeError, AttributeError, KeyError) as e:  # not JSON, or JSON of another shape ([], null)
        raise IncompatibleArtifact(f"{gen_dir / MANIFEST} is unreadable ({type(e).__name__}: {e}); rebuild with "
                                   "`recsys index build`") from None


def list_generations(root: Path) -> list[Manifest]:
    """Complete generations, oldest first."""
    gdir = generations_dir(root)
    if not gdir.is_dir():
        return []
    out = []
    for p in gdir.iterdir():
        if p.is_dir() and (p / MANIFEST).is_file():
            try:
                out.append(read_manifest(p))
            except (NoIndex, IncompatibleArtifact) as e:
                log.warning("skipping generation %s: %s", p.name, e)
    return sorted(out, key=lambda m: (m.created_at, m.generation_id))


def current_id(root: Path) -> str | None:
    """The served generation's id, or None when nothing has been built."""
    return _read_pointer(Path(root) / POINTER)


def _read_pointer(path: Path) -> str | None:
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


@dataclass(frozen=True)
class Rebase:
    """How a generation built from a catalogue snapshot read while ``base`` was served is switched to. If ``CURRENT``
    moved meanwhile (an API upsert published a delta), switching blindly would drop what that newer generation
    served: ``catch_up(gid)`` then writes and serves a delta over ``gid`` with what changed in the store since (its
    id; None when nothing did)."""

    base: str | None
    catch_up: Callable[[str], str | None]


def switch(root: Path, generation_id: str, rebase: Rebase | None = None) -> str:
    """Serve ``generation_id``, caught up per ``rebase`` when ``CURRENT`` moved since its snapshot; the id served.
    Call with the build lock held: no other generation can be published between the check and the switch."""
    cur = current_id(root)
    if rebase is not None and cur != rebase.base:
        if generation_id == rebase.base and cur is not None:  # nothing new was built; what moved CURRENT is newer
            log.info("index generation %s was replaced by %s meanwhile; %s stays served", generation_id, cur, cur)
            return cur
        log.warning("index generation %s was built from a catalogue read while %s was served, and %s is served now: "
                    "the changes since are added as a delta", generation_id, rebase.base, cur)
        newer = rebase.catch_up(generation_id)
        if newer is not None:
            return newer  # served by its own build
    if cur != generation_id:
        set_current(root, generation_id)
    return generation_id


def publish(root: Path, generation_id: str, keep: int, rebase: Rebase | None = None) -> str:
    """Serve a generation written without switching to it (see :func:`switch`), then prune, under the build lock;
    the id served."""
    with build_lock(root):
        served = switch(root, generation_id, rebase)
        if pending_id(root) == generation_id:
            (Path(root) / PENDING).unlink()
        prune(root, keep)
    return served


def no_index(root: Path) -> NoIndex:
    """The error for a root with no current generation: nothing built, or a ``CURRENT`` pointer lost beside
    complete generations (then the fix is to point at one, not to build again)."""
    gens = [m.generation_id for m in list_generations(root)]
    if gens:
        return NoIndex(f"no current index generation under {root}: its {POINTER} file is missing, but {len(gens)} "
                       f"generation(s) are there; serve one with `recsys index rollback --to {gens[-1]}` (see "
                       "`recsys index list`), or run `recsys index build`")
    return NoIndex(f"no index generation under {root}; run `recsys build` (fits the encoder's heads, embeds the "
                   "items, builds the index and trains the ranker)")


def generation_path(root: Path, generation_id: str | None = None) -> Path:
    """Directory of ``generation_id`` (default: the current one); NoIndex when there is none."""
    gid = generation_id or current_id(root)
    if gid is None:
        raise no_index(root)
    if Path(gid).name != gid or gid.startswith("."):  # "../generations/ID" reached one, but CURRENT must name it
        named = Path(gid).name
        alone = f" ({named})" if named and (generations_dir(root) / named / MANIFEST).is_file() else ""
        raise NotFound(f"{gid!r} is not an index generation id: give the id alone{alone}, as `recsys index list` "
                       "shows it, not a path")
    path = generations_dir(root) / gid
    if not (path / MANIFEST).is_file():
        raise NotFound(f"index generation {gid!r} not found under {root}; see `recsys index list`")
    return path


def set_current(root: Path, generation_id: str) -> None:
    """Point ``CURRENT`` at a complete generation (atomic replace)."""
    generation_path(root, generation_id)
    write_text_atomic(Path(root) / POINTER, generation_id + "\n")
    log.info("index generation %s is now current", generation_id)


ROLLBACK_WAIT_S = 10.0
"""How long a rollback waits for a build (or an API publication) holding the build lock before it is refused."""


def rollback(root: Path, to: str | None = None, *, force: bool = False,
             query_encoder: QueryEncoder | None = None, ranker_fit: RankerFit | None = None) -> str:
    """Serve ``to``, or the generation built before the current one (the newest intact one when ``CURRENT`` names a
    generation that is gone). Unless ``force``, one that every query would fail against is refused: one the
    ``query_encoder`` cannot serve, or without it one of another encoder or dimension than the served one; but
    never one where nothing gets worse (none is served, or the served one has its encoder). So is one the current
    ranker cannot rank (``ranker_fit``: :func:`~recsys.index.pairing.refuse_unrankable`). Returns the id now
    current. Under the build lock: a build switching later would serve its own generation and silently undo the
    rollback, so one running for over ``ROLLBACK_WAIT_S`` is refused, as is a data directory that cannot be
    written, in one line."""
    if not Path(root).is_dir():  # nothing was ever built here: said without creating the directory for the lock
        raise no_index(root)
    doing = "roll back the index generation"
    with write_lock(root, doing, wait_s=ROLLBACK_WAIT_S, busy="A rollback now would be undone when the build "
                    "serves its own generation. "):
        to = _rollback_target(root, to, force, query_encoder, ranker_fit)
        try:
            set_current(root, to)
        except OSError as e:
            raise unwritable(root, e, doing) from e
    return to


def _rollback_target(root: Path, to: str | None, force: bool, query_encoder: QueryEncoder | None,
                     ranker_fit: RankerFit | None = None) -> str:
    """The generation :func:`rollback` serves: checked as it says."""
    gens = {m.generation_id: m for m in list_generations(root)}
    ids, cur = list(gens), current_id(root)
    verified = None
    if to is None:
        if cur is None:
            raise no_index(root)
        if cur not in gens:  # deleted or unreadable: "before" it means nothing; the newest one that verifies
            to = verified = next((g for g in reversed(ids) if not verify(root, g)), None)
            if to is None:
                raise NotFound(f"{POINTER} names {cur!r}, which is not a complete generation, and no other verifies "
                               f"under {root}; run `recsys index build`")
        elif ids.index(cur) == 0:
            raise NotFound(f"no generation older than {cur!r} to roll back to under {root}; see `recsys index list`")
        else:
            to = ids[ids.index(cur) - 1]
    bad = [] if to == verified else verify(root, to)  # hashed once: a generation can be gigabytes
    if bad:
        raise IndexError_(f"index generation {to} is damaged ({', '.join(bad[:5])} missing or changed); still serving "
                          f"{cur}. Roll back to another (`recsys index list`) or `recsys index build --full`")
    target = gens.get(to) or read_manifest(generation_path(root, to))
    if not force:
        refuse_unservable(target, gens.get(cur or ""), list(gens.values()), query_encoder)
        refuse_unrankable(target, gens.get(cur or ""), ranker_fit)
    return to


def damaged(path: Path, m: Manifest, names: list[str] | None = None, *, budget_mb: float | None = None,
            trust_loads: bool = False) -> list[str]:
    """Files of the generation at ``path`` (``names``, default all) missing or differing from its manifest, hashed.
    Over ``budget_mb`` only sizes are compared (as :func:`check_on_load`). ``trust_loads``: a file this process
    hashed verifying a generation, unchanged since, is not read again (a server's delta over the generation it
    loaded moments ago costs no second hashing of it)."""
    wanted = list(m.files) if names is None else list(names)
    if budget_mb is not None and sum(m.sizes.values()) / 2**20 > budget_mb:
        return [n for n in _sized_wrong(path, m) if n in wanted]
    return [n for n in wanted if n not in m.files or not (path / n).is_file()
            or verified_hash(path / n, trust_loads) != m.files[n]]


def _sized_wrong(path: Path, m: Manifest) -> list[str]:
    return [name for name in m.files if not (path / name).is_file()
            or (name in m.sizes and (path / name).stat().st_size != m.sizes[name])]


def incomplete_generations(root: Path) -> list[str]:
    """Directories under ``generations/`` with no manifest: what an interrupted prune leaves (a build renames a
    generation in only once its manifest is written), never servable."""
    gdir = generations_dir(root)
    if not gdir.is_dir():
        return []
    return sorted(p.name for p in gdir.iterdir() if p.is_dir() and not (p / MANIFEST).exists())


def prune(root: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` generations, and what interrupted prunes left; the current one always
    stays. (A delta generation holds hard links to its base's files, so deleting the base never breaks it.)"""
    gens = list_generations(root)
    held = {current_id(root), pending_id(root)} - {None}
    keep_ids = {m.generation_id for m in gens[-max(keep, 1):]} | held
    removed = []
    for gid in [m.generation_id for m in gens] + incomplete_generations(root):
        if gid not in keep_ids:  # the manifest first: a prune cut short leaves a directory no one lists or serves
            (generations_dir(root) / gid / MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(generations_dir(root) / gid, ignore_errors=True)
            removed.append(gid)
    if removed:
        fsync_dir(generations_dir(root))
        log.info("pruned index generations %s", removed)
    return removed


def clean_tmp(root: Path) -> None:
    """Remove leftovers of killed builds (call with the build lock held)."""
    t = tmp_dir(root)
    if t.is_dir():
        for p in t.iterdir():
            shutil.rmtree(p, ignore_errors=True)


def verify(root: Path, generation_id: str | None = None) -> list[str]:
    """Files of a generation whose SHA-256 differs from its manifest (or are missing); empty when intact."""
    path = generation_path(root, generation_id)
    return verify_files(path, read_manifest(path))


def verify_files(path: Path, m: Manifest) -> list[str]:
    """:func:`verify` of a generation whose manifest is already read."""
    bad = [name for name, digest in m.files.items()
           if not (path / name).is_file() or verified_hash(path / name) != digest]
    if checksum_of(m.files) != m.checksum or not _manifest_intact(path):
        bad.append(MANIFEST)
    return bad


def _manifest_intact(path: Path) -> bool:
    """The manifest file's fields still hash to the checksum recorded among them (true for an older generation that
    recorded none: see ``Manifest.manifest_checksum``). Read again as written: unknown fields count too."""
    try:
        fields = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        recorded = fields.get("manifest_checksum") or ""
        return not recorded or recorded == manifest_checksum(fields)
    except (OSError, ValueError, AttributeError):
        return False


def check_on_load(path: Path, m: Manifest, budget_mb: float) -> None:
    """Refuse to serve a damaged generation. Up to ``budget_mb`` of files every one is hashed (about 1 GB/s: a
    flipped bit in a FAISS file otherwise loads and answers impossible scores); above it only sizes are compared,
    and ``recsys index verify`` hashes on request."""
    total = sum(m.sizes.values()) / 2**20
    if total <= budget_mb:
        bad = verify_files(path, m)
    else:  # the manifest's own checksum costs microseconds: checked at any size
        bad = _sized_wrong(path, m) + ([] if _manifest_intact(path) else [MANIFEST])
        log.info("index generation %s: %.0f MB, over index.verify_on_load_mb (%s): sizes checked, not hashed",
                 m.generation_id, total, budget_mb)
    if bad:
        raise IndexError_(f"index generation {m.generation_id} is damaged: {', '.join(bad[:5])} "
                          f"{'is missing or differs' if len(bad) == 1 else 'are missing or differ'} from the checksums "
                          f"it was built with. {damaged_remedy(path.parent.parent, m.generation_id)}")


_PREVIOUS_REMEDY = ("`recsys index rollback` serves the previous generation (`recsys index list` shows them); "
                    "`recsys index build --full` builds a new one")


def damaged_remedy(root: Path, generation_id: str | None) -> str:
    """What to run about damaged generation ``generation_id`` (under ``root``): a rollback only where there is one to
    roll back to. Every message about a damaged generation ends with it: a lone one has no previous to serve."""
    ids = [m.generation_id for m in list_generations(root)]
    others = [g for g in ids if g != generation_id]
    if not others:
        return "There is no other generation to roll back to: `recsys index build --full` builds a new one"
    if generation_id not in ids or ids.index(generation_id) > 0:
        return _PREVIOUS_REMEDY
    return (f"`recsys index rollback --to {others[-1]}` serves another generation (`recsys index list` shows them); "
            "`recsys index build --full` builds a new one")


def check_compatible(manifest: Manifest, *, encoder_id: str | None, dim: int | None, where: Path) -> None:
    """Refuse a generation made by another encoder or of another dimension than the caller's."""
    if manifest.format_version > FORMAT_VERSION:
        raise IncompatibleArtifact(
            f"index generation {manifest.generation_id} at {where} has format {manifest.format_version}, this "
            f"recsys reads up to {FORMAT_VERSION}; upgrade recsys or rebuild with `recsys index build`")
    if encoder_id is not None and manifest.encoder_id != encoder_id:
        raise IncompatibleArtifact(
            f"index generation {manifest.generation_id} at {where} was built with encoder {manifest.encoder_id!r}, "
            f"but the configured encoder is {encoder_id!r}; rebuild it with `recsys index build` (or roll back to a "
            "generation of this encoder with `recsys index rollback --to ID`)")
    if dim is not None and manifest.dim != dim:
        raise IncompatibleArtifact(
            f"index generation {manifest.generation_id} at {where} holds {manifest.dim}-d vectors, but the encoder "
            f"makes {dim}-d vectors; rebuild it with `recsys index build`")
