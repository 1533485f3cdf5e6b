"""``recsys encoder fit``: fit the projection heads on the catalogue's own (image, text) pairs.

Towers stay frozen; their features are cached (:mod:`recsys.encoders.features`), so after the first run a re-fit
takes seconds. ``val_pairs`` pairs (at most a fifth) are held out to report cross-modal retrieval, recall@10, which
is reported only from more than 10 held-out pairs: with 10 or fewer every pair is in the top 10 by construction. At
least :data:`MIN_PAIRS` pairs are needed. The heads are saved as a versioned artifact under
``settings.home/encoders/<preset>/<version>/`` with a manifest, recorded as an ``Artifact(kind="encoder")`` row, and
switched in as the current heads atomically; ``recsys build`` saves them without the switch and makes them current
itself, with the index and ranker it builds on them (a build killed before that leaves the served set as it was).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import Settings
from recsys.encoders.cache import disk_problem
from recsys.encoders.encoder import (
    TowerEncoder,
    current_heads_dir,
    get_encoder,
    heads_root,
    new_heads,
    set_current_heads,
)
from recsys.encoders.features import MediaJob, feature_caches, image_features, text_features
from recsys.encoders.media import MediaFinder, MediaLimits
from recsys.encoders.text import ItemRecord, field_texts
from recsys.encoders.training import RECALL_K, FitParams, PairData, train_heads
from recsys.errors import EncoderError, EncoderStorageError, TooFewPairs
from recsys.store import Artifact, Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

MIN_PAIRS = 4
"""(image, text) pairs below which a fit is refused: the features' standardisation and the contrastive loss need
several rows (one pair crashed with a NaN standard deviation)."""


@dataclass
class FitReport:
    version: str
    encoder_id: str
    path: str
    pairs_train: int
    pairs_val: int
    image_to_text_recall_at_10: float | None
    """None when not measured (:attr:`recall_note` says why)."""
    text_to_image_recall_at_10: float | None
    feature_seconds: float
    train_seconds: float
    broken_media: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    recall_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def limits_of(settings: Settings) -> MediaLimits:
    e = settings.encoder
    return MediaLimits(max_pixels=e.max_image_pixels, max_bytes=e.max_image_bytes, video_frames=e.video_frames)


def build_pairs(encoder: TowerEncoder, items: Sequence[ItemRecord], settings: Settings,
                progress: Progress | None = None,
                text_progress: Progress | None = None) -> tuple[PairData, dict[str, str]]:
    """Pairs (first decodable image or video, configured field texts) of the items that have media and text;
    ``progress`` follows the image features, ``text_progress`` the text features.

    Returns the pairs and the reason per uri of media that failed to decode.
    """
    fields: Mapping[str, float] = settings.encoder.text_fields
    towers = encoder.towers
    icache, tcache = feature_caches(settings, towers)
    find = MediaFinder.of(settings)
    with_media = [(it, MediaJob(it.media[0][1], it.media[0][0], find(it.media[0][1]))) for it in items if it.media]
    e = settings.encoder
    feats, errors = image_features(towers, [j for _, j in with_media], icache, limits_of(settings),
                                   batch_size=e.batch_size, num_workers=e.num_workers, progress=progress)
    rows: list[tuple[ItemRecord, MediaJob, list[tuple[str, str, float]]]] = []
    texts: list[str] = []
    for it, job in with_media:
        ft = field_texts(it, fields)
        if job.key in feats and ft:
            rows.append((it, job, ft))
            texts.extend(t for _, t, _ in ft)
    if not rows:
        decodable = {it.item_id for it, job in with_media if job.key in feats}
        raise _no_pairs(items, decodable, len(with_media) - len(decodable), fields)
    tfeats = text_features(towers, texts, tcache, progress=text_progress)
    uniq = list(tfeats)
    pos = {t: i for i, t in enumerate(uniq)}
    names = list(fields)
    idx = np.full((len(rows), len(names)), -1, np.int64)
    w = np.zeros((len(rows), len(names)), np.float32)
    for r, (_, _, ft) in enumerate(rows):
        for name, text, weight in ft:
            c = names.index(name)
            idx[r, c], w[r, c] = pos[text], weight
    data = PairData(
        item_ids=[it.item_id for it, _, _ in rows],
        image=np.stack([feats[j.key] for _, j, _ in rows]).astype(np.float32),
        text_table=np.stack([tfeats[t] for t in uniq]).astype(np.float32),
        field_idx=idx, field_w=w, fields=names,
    )
    return data, {j.uri: errors[j.key] for _, j in with_media if j.key in errors}


def _no_pairs(items: Sequence[ItemRecord], decodable: set[str], broken: int,
              fields: Mapping[str, float]) -> EncoderError:
    """Why no item has both a decodable image and text, counted by what is missing, with what to do: TooFewPairs
    where the catalogue lacks them (``recsys build`` goes on unfitted), a plain EncoderError where its pictures
    cannot be read (``recsys build`` stops)."""
    texted = {it.item_id for it in items if field_texts(it, fields)}
    names = ", ".join(f for f, w in fields.items() if w > 0) or "none"
    need = "the encoder is fitted on (image, text) pairs of the same items"
    if not items:
        return EncoderError("no items to fit the encoder on: import a catalogue with images and text first "
                            "(`recsys import items FILE`)")
    if decodable and not texted:
        return TooFewPairs(
            f"{len(decodable)} item(s) have a decodable image but none has text in the configured text fields "
            f"({names}; RECSYS_ENCODER__TEXT_FIELDS): import the items' titles or descriptions, or set "
            f"RECSYS_ENCODER__TEXT_FIELDS to the fields the catalogue fills; {need}")
    if texted and not decodable:
        failed = f" ({broken} item(s) have media that failed to decode: `recsys items show ID` says why)" \
            if broken else ""
        # pictures named but none readable (a wrong media root) is a mistake to fix, not a shop without photos
        return (EncoderError if broken else TooFewPairs)(
            f"{len(texted)} item(s) have text but none has a decodable image{failed}: import a catalogue with images "
            f"(an image column, `recsys import items FILE`); {need}")
    if texted and decodable:
        return TooFewPairs(
            f"{len(decodable)} item(s) have a decodable image and {len(texted)} have text ({names}), but none has "
            f"both; {need}: import images for the items with text, or text for those with images")
    return TooFewPairs(f"none of the {len(items)} item(s) has a decodable image or text in the configured text "
                        f"fields ({names}; RECSYS_ENCODER__TEXT_FIELDS): import a catalogue with images and text")


def split_pairs(data: PairData, val_pairs: int, seed: int = 0) -> tuple[PairData, PairData]:
    """A seeded random hold-out of ``val_pairs`` pairs (at most a fifth of them)."""
    n = len(data)
    k = min(val_pairs, n // 5)
    perm = np.random.default_rng(seed).permutation(n)
    return data.subset(np.sort(perm[k:])), data.subset(np.sort(perm[:k]))


def fit_on_pairs(encoder: TowerEncoder, data: PairData, params: FitParams,
                 progress: Progress | None = None) -> tuple[TowerEncoder, dict[str, float], int, int]:
    """Fitted heads, their metrics, and the training and held-out pair counts. EncoderError for fewer than
    :data:`MIN_PAIRS` pairs, or a fit whose weights are not finite (never made current)."""
    if len(data) < MIN_PAIRS:
        raise TooFewPairs(f"only {len(data)} item(s) have both a decodable image and text; fitting the encoder needs "
                           f"at least {MIN_PAIRS} such (image, text) pairs: import more items with images (or fix the "
                           "broken ones `recsys items show ID` names), then run `recsys encoder fit` again")
    train, val = split_pairs(data, params.val_pairs, params.seed)
    heads = new_heads(encoder.preset, encoder.towers, params.seed)
    metrics = train_heads(heads, train, params, val, progress)
    if not all(bool(t.isfinite().all()) for t in heads.state_dict().values() if t.is_floating_point()):
        raise EncoderError(f"the fit on {len(train)} pairs diverged (its weights are not finite); the current heads "
                           "stay: try a lower learning rate or more pairs")
    return TowerEncoder(encoder.preset, encoder.towers, heads), metrics, len(train), len(val)


def recall_note(n_val: int) -> str:
    """Why the held-out recall@10 is not reported ("" when it is)."""
    if n_val > RECALL_K:
        return ""
    return (f"not measured: {n_val} held-out pairs, and recall@{RECALL_K} of {RECALL_K} or fewer is 1.0 by "
            f"construction; it needs more than {RECALL_K} (a fifth of the pairs at most are held out, "
            "--val-pairs caps them)")


StepProgress = Callable[[str, int, int], None]
"""``progress(part, done, total)``: the fit has three parts, the image and text features and the heads' steps."""


def _part(progress: StepProgress | None, part: str) -> Progress | None:
    return None if progress is None else (lambda done, total: progress(part, done, total))


def _publish(fitted: TowerEncoder, manifest: dict[str, Any], directory: Path, settings: Settings,
             switch: bool = True) -> None:
    """Save the heads (synced) and, with ``switch``, make them current. A failed write (a full disk, a read-only
    directory) removes the new directory and raises EncoderStorageError; the current heads stay."""
    try:
        fitted.heads.save(directory, manifest)
        if switch:
            set_current_heads(settings, fitted.preset, manifest["version"])
    except (OSError, RuntimeError) as e:  # torch.save to a path says a failed write (a full disk) as RuntimeError
        shutil.rmtree(directory, ignore_errors=True)
        cause, hint = disk_problem(directory, e)
        if not isinstance(e, OSError):
            cause = f"torch could not write heads.pt: {str(e).splitlines()[0] if str(e) else 'RuntimeError'}"
            hint = "free space on that disk (most often the cause)"
        current = current_heads_dir(settings, fitted.preset)
        # a build's heads are only part of it: `encoder fit` alone would leave the index on the old heads
        rerun = ("run `recsys encoder fit` again (the tower features are cached: it takes seconds)" if switch else
                 "run `recsys build` again (with the options it had; the tower features are cached)")
        raise EncoderStorageError(
            f"writing the fitted heads to {directory} failed ({cause}); its partial files were removed and "
            f"{current.name if current else 'no heads'} stay current: {hint}, then {rerun}") from e


def fit_encoder(store: Store, settings: Settings, progress: StepProgress | None = None,
                params: FitParams | None = None, *, switch: bool = True) -> FitReport:
    """Fit the configured preset's heads on the stored catalogue and make them current; without ``switch`` they are
    saved only (``get_encoder(settings, version=report.version)`` loads them; ``set_current_heads`` switches)."""
    from recsys.encoders.catalog import read_items, record_media_status
    from recsys.index.locks import check_space, space_needed

    params = params or FitParams(seed=settings.ranking.seed)
    base = get_encoder(settings, fitted=False)
    # room for heads like the current ones, said before minutes of features and training, not at the save
    check_space(heads_root(settings, base.preset), "fit the encoder's heads",
                space_needed(current_heads_dir(settings, base.preset)), EncoderStorageError)
    t0 = time.perf_counter()
    data, errors = build_pairs(base, read_items(store), settings, _part(progress, "image features"),
                               _part(progress, "text features"))
    record_media_status(store, errors)
    feature_s = time.perf_counter() - t0
    fitted, metrics, n_train, n_val = fit_on_pairs(base, data, params, _part(progress, "head steps"))
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory = heads_root(settings, base.preset) / version
    manifest: dict[str, Any] = {
        "version": version, "preset": base.preset.name, "towers": base.towers.id,
        "encoder_id": f"{base.preset.name}@{version}",
        "dim": fitted.dim, "fields": data.fields, "pairs_train": n_train, "pairs_val": n_val, "params": asdict(params),
        "metrics": metrics, "recall_note": recall_note(n_val),
    }
    _publish(fitted, manifest, directory, settings, switch)
    with store.session() as s:
        s.add(Artifact(kind="encoder", version=manifest["encoder_id"], path=str(directory.resolve()),
                       manifest=manifest))
    log.info("encoder %s fitted: %s", manifest["encoder_id"], metrics)
    return FitReport(
        version=version, encoder_id=manifest["encoder_id"], path=str(directory), pairs_train=n_train, pairs_val=n_val,
        image_to_text_recall_at_10=metrics.get(f"image_to_text_recall@{RECALL_K}"),
        text_to_image_recall_at_10=metrics.get(f"text_to_image_recall@{RECALL_K}"),
        feature_seconds=round(feature_s, 2), train_seconds=metrics["train_seconds"], broken_media=len(errors),
        metrics=metrics, recall_note=recall_note(n_val),
    )
