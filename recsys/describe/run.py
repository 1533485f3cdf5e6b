"""``recsys items describe``: a short description of each item, written from its image.

For every facet of the vocabulary the item's image vector (mean of its decodable images, through the same cached
tower features as ``recsys embed``) is scored against the facet's labels by the zero-shot tagger's softmax
(:func:`recsys.encoders.tagging.score_labels`); the best label of each facet whose score reaches the confidence
threshold is worded into the vocabulary's sentence ("Red striped dress in jersey."). A facet that names a catalogue
``field`` (the hm vocabulary's colour and garment type) also takes the vote of the item's image neighbours among the
other items carrying such a value, mixed with the zero-shot score (:mod:`recsys.describe.transfer`), and, with
``probe_weight`` (hm: colour and garment), a classifier fitted on those items' raw tower features and, where asked,
their photos' colour statistics (:mod:`recsys.describe.probe`, :mod:`recsys.describe.pixels`; an item is never
scored by a probe that read its own label). The text, the facets with their scores and the
encoder are stored in ``item_descriptions``, apart from the merchant's title and description, which are never
written. A re-run replaces an item's generated description, and removes it where nothing is confident any more; an
import or upsert that gives the item other images removes it too (:func:`recsys.store.importers.writer.upsert_items`).

Items are described in chunks, each committed on its own; an item without a decodable image is reported with the
reason and keeps any earlier description: one bad photo never stops the run. An item whose images change (an import
or upsert) or that is deleted while the run scores it is skipped, and reported with the reason: each chunk checks,
in the transaction that writes it, that its items still have the images the run read (:func:`still_as_read`).

A facet whose ``field`` matches none of its labels on any item (absent from this catalogue, another domain's
vocabulary) has no voter and no probe: it keeps its zero-shot score, and the report says so
(:mod:`recsys.describe.report`, with the run's other warnings and counts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from recsys.config import Settings
from recsys.describe.pixels import DIM as PIXEL_DIM
from recsys.describe.pixels import pixel_features
from recsys.describe.probe import FoldedProbe, feature_columns, fit_folded
from recsys.describe.report import DescribeReport, run_warnings, tally
from recsys.describe.transfer import LabelSource, candidate_items, label_indices, mix, neighbour_votes
from recsys.describe.vocabulary import Vocabulary
from recsys.encoders.base import l2_normalise
from recsys.encoders.encoder import TowerEncoder, get_encoder
from recsys.encoders.text import ItemRecord, poor_text
from recsys.errors import UnknownItem, ValidationFailed
from recsys.store import Store
from recsys.store.tables import Item, ItemMedia

log = logging.getLogger(__name__)

__all__ = ["DescribeReport", "describe_items"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stages "labels" (the labelled items' images), "pixels" (their photos' colour
statistics), "probes" (fits), then "items" (the items described)."""
CHUNK = 1024
"""Items per round (image features, scoring, one commit)."""
MAX_ERRORS = 100


def select_items(items: Sequence[ItemRecord], *, only_missing: bool, poor_below: int,
                 item_ids: Sequence[str] | None = None, limit: int | None = None) -> list[ItemRecord]:
    """The items to describe: those named (all by default), only those whose own text is poor with
    ``only_missing``, the first ``limit`` of them by id."""
    out = list(items)
    if item_ids is not None:
        wanted = set(item_ids)
        out = [it for it in out if it.item_id in wanted]
        unknown = sorted(wanted - {it.item_id for it in out})
        if unknown:  # a typo'd id is not "0 items described"
            raise UnknownItem(f"unknown item id(s) {', '.join(map(repr, unknown[:5]))}"
                              f"{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}; see `recsys items "
                              "show ID` (deleted items are not described)")
    if only_missing:
        out = [it for it in out if poor_text(it.title, it.description, poor_below)]
    return out[:limit] if limit is not None else out


def image_rows(encoder: TowerEncoder, items: Sequence[ItemRecord], settings: Settings,
               progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """((n, image_dim) raw tower features and (n, d) unit image vectors, each the mean over the item's decodable
    images; row -> reason for the rows with none, which are zero)."""
    from recsys.encoders.features import MediaJob, feature_caches, image_features
    from recsys.encoders.fit import limits_of

    e = settings.encoder
    from recsys.encoders.media import MediaFinder

    icache, _ = feature_caches(settings, encoder.towers)
    find = MediaFinder.of(settings)  # a moved or copied home reads its pictures where they are now

    def job(kind: str, uri: str) -> MediaJob:
        return MediaJob(uri, kind, find(uri))

    jobs = [job(k, u) for it in items for k, u in it.media]
    feats, errors = image_features(encoder.towers, jobs, icache, limits_of(settings), batch_size=e.batch_size,
                                   num_workers=e.num_workers, progress=progress)
    keys = [k for k in dict.fromkeys(j.key for j in jobs) if k in feats]
    projected = dict(zip(keys, encoder.project_images(np.stack([feats[k] for k in keys])), strict=True)) \
        if keys else {}
    raw = np.zeros((len(items), encoder.towers.image_dim), np.float32)
    out = np.zeros((len(items), encoder.dim), np.float32)
    failed: dict[int, str] = {}
    for r, it in enumerate(items):
        found = [job(k, u).key for k, u in it.media if job(k, u).key in projected]
        if found:
            raw[r] = np.mean([feats[k] for k in found], axis=0)
            out[r] = np.mean([projected[k] for k in found], axis=0)
            continue
        reasons = [errors[job(k, u).key] for k, u in it.media if job(k, u).key in errors]
        failed[r] = "; ".join(dict.fromkeys(reasons)) if reasons else "no image"
    return raw, l2_normalise(out), failed


def label_source(encoder: TowerEncoder, items: Sequence[ItemRecord], vocabulary: Vocabulary, settings: Settings,
                 exclude: Collection[str] = (), progress: Progress | None = None) -> LabelSource | None:
    """The items whose field values vote (see :mod:`recsys.describe.transfer`), with their raw tower features
    when a facet has a probe; None when no facet names a field or no item's value is one of its labels."""
    fields = {f.field for f in vocabulary.facets if f.field}
    voters = candidate_items(items, fields, exclude) if fields else []
    labelled = np.zeros(len(voters), bool)
    for f in vocabulary.facets:  # an item whose values are no label never votes: its photos are not read
        if f.field:
            labelled |= label_indices(voters, f.field, f.labels) >= 0
    voters = [it for it, keep in zip(voters, labelled, strict=True) if keep]
    if not voters:
        return None
    raw, vecs, failed = image_rows(encoder, voters, settings,
                                   progress=(lambda d, t: progress("labels", d, t)) if progress else None)
    keep = [r for r in range(len(voters)) if r not in failed]
    voters = [voters[r] for r in keep]
    labels = {f.name: label_indices(voters, f.field, f.labels) for f in vocabulary.facets if f.field}
    probed = any(f.probe_weight > 0 and learnable(labels[f.name]) for f in vocabulary.facets if f.field)
    features = probe_features(raw[keep], voters, vocabulary, settings, progress) if probed else None
    return LabelSource([it.item_id for it in voters], vecs[keep], labels, features)


def voted(labels: np.ndarray) -> bool:
    """Whether a facet's label indices hold a label (a neighbour to vote); without, its score stays zero-shot."""
    return bool((labels >= 0).any())


def learnable(labels: np.ndarray) -> bool:
    """Whether a probe has anything to learn from a facet's label indices: two distinct labels or more."""
    return len(np.unique(labels[labels >= 0])) >= 2


def wants_pixels(vocabulary: Vocabulary) -> bool:
    return any(f.probe_weight > 0 and "pixels" in f.probe_features for f in vocabulary.facets)


def probe_features(raw: np.ndarray, items: Sequence[ItemRecord], vocabulary: Vocabulary,
                   settings: Settings, progress: Progress | None = None) -> np.ndarray:
    """What the probes read: the raw tower features, followed by the photos' colour statistics
    (:mod:`recsys.describe.pixels`) when a probe names the "pixels" block."""
    if not wants_pixels(vocabulary):
        return raw
    from recsys.encoders.fit import limits_of
    from recsys.encoders.media import MediaFinder

    find, parts = MediaFinder.of(settings), []
    for start in range(0, len(items), CHUNK):  # chunks: progress on a step of minutes (11 ms a photo)
        parts.append(pixel_features(items[start: start + CHUNK], limits_of(settings), settings.encoder.num_workers,
                                    find))
        if progress:
            progress("pixels", min(start + CHUNK, len(items)), len(items))
    return np.concatenate([raw, np.concatenate(parts) if parts else np.zeros((0, PIXEL_DIM), np.float32)], 1)


def chunk_features(raw: np.ndarray, chunk: Sequence[ItemRecord], vocabulary: Vocabulary, settings: Settings,
                   source: LabelSource | None) -> np.ndarray:
    """:func:`probe_features` of ``chunk``, taken from the label source where it already holds an item (the
    same raw features and photos), so a whole-catalogue run reads each photo's colour statistics once."""
    known = {} if source is None or source.features is None else \
        {i: r for r, i in enumerate(source.item_ids)}
    rows = [known.get(it.item_id) for it in chunk]
    if source is None or source.features is None or any(r is None for r in rows):
        return probe_features(raw, chunk, vocabulary, settings)
    return source.features[np.asarray(rows, np.int64)]


def fit_probes(vocabulary: Vocabulary, source: LabelSource | None, towers_id: str, tower_dim: int,
               described: Collection[str], progress: Progress | None = None) -> dict[str, FoldedProbe]:
    """Facet name -> its probe fitted on the label source (facets with ``probe_weight`` > 0 and enough labels),
    folded so that no item in ``described`` is scored by a probe that read its own label."""
    if source is None or source.features is None:
        return {}
    out = {}
    probed = [f for f in vocabulary.facets
              if f.probe_weight > 0 and f.name in source.labels and learnable(source.labels[f.name])]
    for n, f in enumerate(probed):
        columns = feature_columns(towers_id, tower_dim, f.probe_features, source.features.shape[1] - tower_dim)
        fitted = (lambda d, t, n=n: progress("probes", n * t + d, len(probed) * t)) if progress else None
        probe = fit_folded(source.features, source.labels[f.name], source.item_ids, described, len(f.labels),
                           columns, hidden=f.probe_hidden, progress=fitted)
        if probe is not None:
            out[f.name] = probe
    return out


def facet_scores(vecs: np.ndarray, item_ids: Sequence[str], vocabulary: Vocabulary, label_vecs: dict[str, np.ndarray],
                 source: LabelSource | None, neighbours: int, features: np.ndarray | None = None,
                 probes: dict[str, FoldedProbe] | None = None) -> dict[str, np.ndarray]:
    """Facet name -> (n, labels) scores: the zero-shot softmax, mixed with the neighbours' votes where the facet
    names a field that some item's value matched and ``neighbours`` > 0, then with its probe's probabilities of the
    raw ``features``."""
    from recsys.encoders.tagging import score_labels

    out = {}
    for f in vocabulary.facets:
        scores = score_labels(vecs, label_vecs[f.name])
        # a facet whose field matched no label has no voter: uniform shares would only pull its scores to 1/n
        if source is not None and neighbours > 0 and f.name in source.labels and voted(source.labels[f.name]):
            votes = neighbour_votes(vecs, item_ids, source, f.name, len(f.labels), neighbours)
            scores = mix(scores, votes, vocabulary.neighbour_weight)
        if probes and f.name in probes and features is not None:
            scores = mix(scores, probes[f.name].predict(features, item_ids), f.probe_weight)
        out[f.name] = scores
    return out


def describe_items(store: Store, settings: Settings, vocabulary: Vocabulary, *, only_missing: bool = False,
                   min_confidence: float | None = None, limit: int | None = None,
                   item_ids: Sequence[str] | None = None, encoder: TowerEncoder | None = None,
                   neighbours: int | None = None, label_exclude: Collection[str] = (), probe: bool = True,
                   progress: Progress | None = None) -> DescribeReport:
    """Write generated descriptions for the chosen items (see the module docstring); per-item failures are in
    the report, never raised. ``neighbours`` overrides the vocabulary's (0: zero-shot only); the fields of the
    items in ``label_exclude`` are never read as labels (a held-out evaluation's items); ``probe=False`` leaves
    the vocabulary's probes out (zero-shot and vote only)."""
    from recsys.encoders.catalog import read_items

    if not vocabulary.writes_labels:  # every item would be "unconfident" and lose its description
        raise ValidationFailed(f"vocabulary {vocabulary.name}: sentence {vocabulary.sentence!r} writes no label of "
                               "any facet, so every generated description would be withdrawn; nothing was changed")
    t0 = time.perf_counter()
    catalogue = read_items(store)
    items = select_items(catalogue, only_missing=only_missing, item_ids=item_ids, limit=limit,
                         poor_below=settings.encoder.generated_text_below)  # an unknown id: before the encoder loads
    enc = encoder or get_encoder(settings)
    label_vecs = {f.name: enc.encode_texts(f.prompts()) for f in vocabulary.facets}
    k = vocabulary.neighbours if neighbours is None else neighbours
    voters = label_source(enc, catalogue, vocabulary, settings, label_exclude, progress) if k > 0 and items else None
    probes = fit_probes(vocabulary, voters, enc.towers.id, enc.towers.image_dim,
                        {it.item_id for it in items}, progress) if probe else {}
    votes = voters is not None and any(voted(v) for v in voters.labels.values())
    source = "zero-shot" + ("+neighbours" if votes else "") + ("+probe" if probes else "") + f":{enc.id}"
    report = DescribeReport(enc.id, vocabulary.name, len(items), 0, 0, 0, 0, 0.0)
    if k > 0 and items:  # 0 where no item has a value of the field at all (no label source)
        report.labelled = {f.name: 0 if voters is None else int((voters.labels[f.name] >= 0).sum())
                           for f in vocabulary.facets if f.field}
    if progress:
        progress("items", 0, len(items))
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        raw, vecs, failed = image_rows(enc, chunk, settings)
        if probes:
            raw = chunk_features(raw, chunk, vocabulary, settings, voters)
        scores = facet_scores(vecs, [it.item_id for it in chunk], vocabulary, label_vecs, voters, k, raw, probes)
        _write_chunk(store, report, vocabulary, chunk, scores, failed, source, min_confidence)
        if progress:
            progress("items", start + len(chunk), len(items))
    report.warnings = run_warnings(report, vocabulary, bool(probe))
    report.seconds = round(time.perf_counter() - t0, 2)
    log.info("describe: %d items, %d described, %d unconfident, %d failed, %.1fs", report.items, report.described,
             report.unconfident, report.failed, report.seconds)
    return report


def _write_chunk(store: Store, report: DescribeReport, vocabulary: Vocabulary, chunk: Sequence[ItemRecord],
                 scores: dict[str, np.ndarray], failed: dict[int, str], source: str,
                 min_confidence: float | None) -> None:
    """Compose, count and commit one chunk's descriptions (and withdraw those of items with nothing confident).
    Items whose images changed, or that were deleted, since the run read them are skipped (:func:`still_as_read`)."""
    from recsys.store.descriptions import (
        GeneratedDescription,
        description_vocabularies,
        remove_descriptions,
        replace_descriptions,
    )

    composed: list[tuple[ItemRecord, str, list[dict[str, object]]]] = []
    for r, it in enumerate(chunk):
        if r in failed:
            report.failed += 1
            if len(report.errors) < MAX_ERRORS:
                report.errors[it.item_id] = failed[r]
            continue
        facets, chosen = [], {}
        for f in vocabulary.facets:
            j = int(np.argmax(scores[f.name][r]))
            score = float(scores[f.name][r, j])
            used = score >= vocabulary.threshold(f, min_confidence)
            chosen[f.name] = f.labels[j] if used else None
            facets.append({"facet": f.name, "label": f.labels[j], "score": round(score, 4), "used": used})
        composed.append((it, vocabulary.compose(chosen), facets))
    with store.session() as s:  # checked and written in one transaction: an upsert now waits, or came first
        pks, changed = still_as_read(s, [it for it, _, _ in composed])
        for item_id, reason in changed.items():
            report.skipped += 1
            if len(report.errors) < MAX_ERRORS:
                report.errors[item_id] = reason
        rows, unsure = [], []
        for it, text, facets in composed:
            if it.item_id in changed:
                continue
            if not text:
                report.unconfident += 1
                unsure.append(pks[it.item_id])
                continue
            rows.append(GeneratedDescription(pks[it.item_id], text, facets, source, vocabulary.name))
            tally(report, vocabulary, facets)
            if len(report.examples) < 5:
                report.examples[it.item_id] = text
        for old in description_vocabularies(s, [r.item_pk for r in rows]).values():
            if old != vocabulary.name:  # a re-run of another vocabulary: said, not silent
                report.replaced[old] = report.replaced.get(old, 0) + 1
        report.described += replace_descriptions(s, rows)
        report.withdrawn += remove_descriptions(s, unsure)


IMAGES_CHANGED = "skipped: its images changed during the run (its description would describe the old ones)"
DELETED = "skipped: deleted during the run"


def still_as_read(session: Session, items: Sequence[ItemRecord]) -> tuple[dict[str, int], dict[str, str]]:
    """(item id -> key of the ``items`` that are live with the images the run read, item id -> reason for the
    others: deleted, or other images than read, their order aside, as an upsert compares them). One query for
    the chunk. On PostgreSQL the items' rows are locked first, in a statement of their own (FOR NO KEY UPDATE, in
    key order, as the description trigger locks them; a joined read would see the media of the statement's snapshot,
    from before a concurrent upsert committed), so an upsert changing their images either committed before the read,
    which sees it, or waits for this commit and then drops what was written. SQLite's write transaction (BEGIN
    IMMEDIATE) holds the database already."""
    ids = sorted({it.item_id for it in items})
    if not ids:
        return {}, {}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Item.id).where(Item.external_id.in_(ids)).order_by(Item.id)
                        .with_for_update(key_share=True))
    now: dict[str, tuple[int, bool, set[tuple[str, str]]]] = {}
    for ext, pk, deleted, kind, uri in session.execute(
            select(Item.external_id, Item.id, Item.deleted, ItemMedia.kind, ItemMedia.uri)
            .outerjoin(ItemMedia, ItemMedia.item_id == Item.id).where(Item.external_id.in_(ids))):
        media = now.setdefault(ext, (pk, bool(deleted), set()))[2]
        if uri is not None:
            media.add((kind, uri))
    pks, changed = {}, {}
    for it in items:
        pk, deleted, media = now.get(it.item_id, (0, True, set()))
        if deleted:
            changed[it.item_id] = DELETED
        elif media != set(it.media):
            changed[it.item_id] = IMAGES_CHANGED
        else:
            pks[it.item_id] = pk
    return pks, changed
