"""``recsys embed``: item vectors for the whole catalogue, cached, re-encoding only what changed.

Each item's text vector is the weighted, renormalised sum of its field vectors (:mod:`recsys.encoders.text`); its
image vector is the mean of its decodable media's vectors (video: averaged frames), zero when it has none. A medium
that fails to decode is recorded on ``ItemMedia.status="error"`` with the reason and the item is embedded from its
text. Vectors are cached under a key of the encoded content (field texts, media file identities) and the encoder id;
each run also writes a snapshot that :func:`~recsys.encoders.vectors.load_item_vectors` reads.

A medium that failed is tried again by every run (:func:`to_encode`): the cause may be fixed without touching the file
(a raised ``RECSYS_ENCODER__MAX_IMAGE_BYTES``, ``pip install av``, a ``chmod``), which no cache key sees. Its item is
encoded again once the medium loads; until then it keeps its cached vector, bit for bit (encoding it again each run
changed its last bits, and so the index). Media are read where :class:`~recsys.encoders.media.MediaFinder` finds
them, so a data directory moved since its import keeps its vectors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import Settings
from recsys.encoders.base import l2_normalise
from recsys.encoders.cache import VectorCache, digest, disk_problem, media_identity
from recsys.encoders.encoder import TowerEncoder, get_encoder
from recsys.encoders.features import MediaJob, feature_caches, image_features, media_tag, text_features
from recsys.encoders.fit import limits_of
from recsys.encoders.media import MediaError, MediaFinder, MediaLimits, is_remote, load_media, local_path
from recsys.encoders.text import ItemRecord, field_texts
from recsys.errors import EncoderStorageError
from recsys.store import Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
CHUNK = 2048
"""Items per round of feature extraction and cache writes (bounds memory and lost work on interruption)."""


@dataclass
class EmbedReport:
    encoder_id: str
    items: int
    encoded: int
    """Items whose vectors were computed in this run (the others came from the cache)."""
    cached: int
    with_image: int
    broken_media: int
    """Media that failed in this run, those of cached items included (every failed medium is tried each run); an
    http(s) image, never fetched, is pending and not counted."""
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)
    """Item id -> reason, for items with a medium that failed to decode (first 100)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def item_key(item: ItemRecord, encoder_id: str, fields: Mapping[str, float], find: MediaFinder | None = None,
             limits: MediaLimits | None = None) -> str:
    """The key of an item's vectors: its encoder, texts and media (a video's with its frame count, see
    :func:`~recsys.encoders.features.media_tag`)."""
    lim = limits or MediaLimits()
    return digest(encoder_id, field_texts(item, fields),
                  [(media_tag(k, lim), media_identity(u, find(u) if find else None)) for k, u in item.media])


def key_id(enc: TowerEncoder) -> str:
    """The id item-vector keys are made with: the encoder id, plus the towers' id for unfitted heads. Fitted heads
    pin their towers (they are refused for others), but an unfitted open_clip preset kept serving the vectors of a
    checkpoint replaced in place."""
    return enc.id if enc.fitted else f"{enc.id}|{enc.towers.id}"


class MediaStatus(dict[tuple[str, str], str | None]):
    """(uri, kind) -> None (decoded) or the reason it failed: a file that is one item's video and another's image
    has the status of each use. ``get`` of a bare uri answers for every use of it (a failure first), for callers
    that key by uri."""

    def get(self, key: Any, default: Any = None) -> Any:
        if isinstance(key, str):
            uses = [r for (u, _), r in self.items() if u == key]
            return next((r for r in uses if r), None) if uses else default
        return super().get(key, default)


def reason_of(status: Mapping[Any, str | None], uri: str, kind: str) -> str | None:
    """A medium's reason in ``status``, keyed by (uri, kind) or by bare uri."""
    if isinstance(status, MediaStatus):
        return status.get((uri, kind))
    return status.get(uri)  # a plain mapping keyed by bare uri


def to_encode(items: Sequence[ItemRecord], keys: Sequence[str], found: Collection[str],
              failed: Collection[tuple[str, str]], find: MediaFinder, limits: MediaLimits,
              ) -> tuple[list[int], MediaStatus]:
    """(rows to encode, (uri, kind) -> reason of each earlier failed medium that still fails). Rows to encode: the
    items not cached, and the cached ones with a medium in ``failed`` (``ItemMedia.status`` error) that loads now."""
    todo: list[int] = []
    still = MediaStatus()
    for i, (it, key) in enumerate(zip(items, keys, strict=True)):
        if key not in found:
            todo.append(i)
            continue
        for kind, uri in it.media:
            if (uri, kind) not in failed:
                continue
            try:
                load_media(find(uri), kind, limits)
            except MediaError as e:
                still[uri, kind] = str(e)
            except Exception as e:  # a decoder bug, as the feature loader says it
                still[uri, kind] = f"cannot decode ({type(e).__name__}: {e})"
            else:
                todo.append(i)
                break
    return todo, still


def tally(items: Iterable[ItemRecord], status: Mapping[Any, str | None], errors: dict[str, str]) -> int:
    """Failed media of ``items`` by ``status`` ((uri, kind) or uri -> reason or None); their reasons go into
    ``errors`` (first 100 items). An http(s) image is not one: it stays pending, shown from its address, and only a
    run that encodes its item meets it (one run counted and listed it, the next did not)."""
    broken = 0
    for it in items:
        reasons = [r for k, u in it.media if not is_remote(u) and (r := reason_of(status, u, k))]
        if reasons:
            broken += len(reasons)
            if len(errors) < 100:
                errors[it.item_id] = "; ".join(reasons)
    return broken


def vector_cache(settings: Settings, encoder_id: str) -> VectorCache:
    return VectorCache.open(settings, "vectors", encoder_id)


def encode_items(encoder: TowerEncoder, items: Sequence[ItemRecord], settings: Settings,
                 progress: Progress | None = None, find: MediaFinder | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, MediaStatus]:
    """(text (n, d), image (n, d), has_image (n,), (uri, kind) -> None or failure reason) for ``items``; media are read
    where ``find`` (by default one for ``settings``) finds them."""
    e = settings.encoder
    find = find or MediaFinder.of(settings)
    icache, tcache = feature_caches(settings, encoder.towers)
    per_item = [[MediaJob(u, k, find(u)) for k, u in it.media] for it in items]
    jobs = [j for js in per_item for j in js]
    feats, errors = image_features(encoder.towers, jobs, icache, limits_of(settings), batch_size=e.batch_size,
                                   num_workers=e.num_workers, progress=progress)
    fts = [field_texts(it, e.text_fields) for it in items]
    tfeats = text_features(encoder.towers, [t for ft in fts for _, t, _ in ft], tcache)
    d = encoder.dim
    text = np.zeros((len(items), d), np.float32)
    if tfeats:
        uniq = list(tfeats)
        pos = {t: i for i, t in enumerate(uniq)}
        tvecs = encoder.project_texts(np.stack([tfeats[t] for t in uniq]))
        for r, ft in enumerate(fts):
            for _, t, w in ft:
                text[r] += w * tvecs[pos[t]]
    image = np.zeros((len(items), d), np.float32)
    has_image = np.zeros(len(items), bool)
    ok_keys = [j.key for j in jobs if j.key in feats]
    ivecs = dict(zip(ok_keys, encoder.project_images(np.stack([feats[k] for k in ok_keys])), strict=True)) \
        if ok_keys else {}
    status = MediaStatus()
    for r, js in enumerate(per_item):
        vs = []
        for job in js:
            key = job.key
            status[job.uri, job.kind] = errors.get(key) if key not in ivecs else None
            if key in ivecs:
                vs.append(ivecs[key])
        if vs:
            image[r] = np.mean(vs, axis=0)
            has_image[r] = True
    return l2_normalise(text), l2_normalise(image), has_image, status


def not_served(status: Mapping[tuple[str, str], str | None], find: MediaFinder) -> set[tuple[str, str]]:
    """The decoded images whose local file lies outside the media roots: embedded, but ``/media`` never serves
    them (their status says so)."""
    from recsys.store.media_roots import under_roots

    out = set()
    for (uri, kind), reason in status.items():
        if reason is None and kind == "image" and not is_remote(uri) and find.roots:
            path = local_path(find(uri))
            if not under_roots(Path(os.path.abspath(path)), find.roots):
                out.add((uri, kind))
    return out


def record_status(store: Store, status: MediaStatus, find: MediaFinder) -> None:
    """Record the media status of encoded items, with the outside-the-media-roots note: one step for the local and
    the Ray engines, so that both write the same rows (the Ray engine's dropped the note, and cleared it)."""
    from recsys.encoders.catalog import record_media_status

    record_media_status(store, status, not_served(status, find))


def tower_text_vectors(encoder: TowerEncoder, items: Sequence[ItemRecord], settings: Settings) -> np.ndarray:
    """(n, text tower dim) float32 unit rows: each item's weighted field texts in the text tower's own space, before
    the fitted head. Item-to-item similarity here is plain semantic likeness of the descriptions, which the ranker
    uses beside the cross-modal vectors (the heads are fitted to match texts to images, not items to items)."""
    e = settings.encoder
    fts = [field_texts(it, e.text_fields) for it in items]
    _, tcache = feature_caches(settings, encoder.towers)
    feats = text_features(encoder.towers, [t for ft in fts for _, t, _ in ft], tcache)
    out = np.zeros((len(items), encoder.towers.text_dim), np.float32)
    for r, ft in enumerate(fts):
        for _, t, w in ft:
            f = feats[t]
            out[r] += w * f / max(float(np.linalg.norm(f)), 1e-9)
    return l2_normalise(out)


def embed_catalog(store: Store, settings: Settings, progress: Progress | None = None,
                  encoder: TowerEncoder | None = None) -> EmbedReport:
    """Embed every (non-deleted) item of the store; cached items are not re-encoded."""
    from recsys.encoders.catalog import failed_media, read_items, record_media_status
    from recsys.encoders.vectors import pack

    t0 = time.perf_counter()
    enc = encoder or get_encoder(settings)
    items = read_items(store, generated_below=settings.encoder.generated_text_below)
    fields = settings.encoder.text_fields
    find = MediaFinder.of(settings)
    keys = [item_key(it, key_id(enc), fields, find, limits_of(settings)) for it in items]
    cache = vector_cache(settings, enc.id)
    found = cache.get_many(keys)
    todo, still = to_encode(items, keys, found, failed_media(store), find, limits_of(settings))
    log.info("embed: %d items, %d cached, %d to encode with %s", len(items), len(items) - len(todo), len(todo), enc.id)
    record_media_status(store, still)
    errors: dict[str, str] = {}
    again = set(todo)
    broken = tally((it for i, it in enumerate(items) if i not in again), still, errors)
    if progress:
        progress(len(items) - len(todo), len(items))
    for start in range(0, len(todo), CHUNK):
        rows = todo[start : start + CHUNK]
        base = len(items) - len(todo) + start

        def chunk_progress(done: int, _total: int, base: int = base, size: int = len(rows)) -> None:
            if progress:
                progress(base + min(done, size), len(items))

        chunk = [items[i] for i in rows]
        text, image, has_image, status = encode_items(enc, chunk, settings, chunk_progress, find)
        new = {keys[i]: pack(text[j], image[j], bool(has_image[j])) for j, i in enumerate(rows)}
        # before caching: a failure cached but not recorded is never retried
        record_status(store, status, find)
        cache.put_many(new)
        found.update(new)
        broken += tally(chunk, status, errors)
        if progress:
            progress(base + len(rows), len(items))
    return finish_embed(settings, enc, items, [found[k] for k in keys], len(todo), broken, errors, t0)


def finish_embed(settings: Settings, enc: TowerEncoder, items: Sequence[ItemRecord], vectors: list[np.ndarray],
                 encoded: int, broken: int, errors: dict[str, str], t0: float) -> EmbedReport:
    """Write the snapshot of a finished embed (packed vectors, the text tower's vectors, content hashes) and its
    report: one ending for the local and the Ray engines, so the two snapshots hold the same arrays."""
    from recsys.encoders.vectors import snapshot_dir, write_snapshot

    tower_text = tower_text_vectors(enc, items, settings)
    try:
        write_snapshot(settings, enc.id, enc.dim, [it.item_id for it in items], vectors, tower_text=tower_text,
                       hashes=[it.content_hash for it in items])
    except OSError as e:  # a full disk or a read-only directory: the vectors themselves are safe in the cache
        where = snapshot_dir(settings, enc.id)
        cause, hint = disk_problem(where, e)
        raise EncoderStorageError(f"writing the item vectors snapshot to {where} failed ({cause}); the snapshot "
                                  f"before it is unchanged and every vector is cached: {hint}, then run `recsys "
                                  "embed` again (it encodes nothing twice)") from e
    return EmbedReport(
        encoder_id=enc.id, items=len(items), encoded=encoded, cached=len(items) - encoded,
        with_image=int(sum(v[-1] > 0.5 for v in vectors)), broken_media=broken,
        seconds=round(time.perf_counter() - t0, 2), errors=errors,
    )
