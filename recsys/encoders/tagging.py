"""Zero-shot tagging: ``recsys items tag --vocabulary FILE``.

For each facet of the vocabulary (colour, category, pattern, style...), every label is encoded as text and compared
with each item's image vector (its text vector when it has no image); the softmax over the facet's labels gives the
scores. The best ``top_k`` labels per facet are stored in ``ItemTag`` with ``source="zero-shot:<encoder id>"``,
replacing that source's earlier tags for the facet. An item with neither text nor image (a zero vector, whose scores
are uniform) gets no tags: any label would be arbitrary. Its earlier zero-shot tags are removed and it is counted.

Vocabulary files: JSON ``{"colour": ["black", "white", ...], ...}``, text lines ``facet: label, label, ...``, or an
``items describe`` vocabulary (TOML or JSON with ``facets``, or a shipped one by name: ``generic``, ``hm``), of which
only the labels are used. A facet needs two labels or more, none two differing only in case, and is given once: the
checks describe makes (:func:`facet_labels`, which it uses). Facet names and labels longer than the store's columns
(100 and 200 characters) are refused, never cut (:func:`check_lengths`).
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, or_

from recsys.config import Settings
from recsys.encoders.encoder import get_encoder
from recsys.errors import ValidationFailed
from recsys.store import ItemTag, Store

log = logging.getLogger(__name__)

TEMPERATURE = 0.05


MAX_LABELS = 2000
"""Labels per facet: every one is a prompt encoded and a softmax column (200,000 loaded, then took minutes)."""
MAX_FACET_CHARS = int(getattr(ItemTag.__table__.c.facet.type, "length", None) or 100)
MAX_LABEL_CHARS = int(getattr(ItemTag.__table__.c.label.type, "length", None) or 200)
"""The store's sizes for a tag's facet and label (``item_tags``): longer ones are refused, never cut (two labels
alike in their first 200 characters collided; two facets alike in their first 100 replaced each other's tags)."""
SHIPPED = Path(__file__).resolve().parents[1] / "describe" / "vocabularies"
"""The vocabularies shipped for ``items describe`` (``generic``, ``hm``); ``items tag`` reads them by name too."""
FORMATS = ("a JSON object of facet to list of labels, 'facet: label, label' lines, or an `items describe` "
           "vocabulary (a .toml or .json file with facets, or a shipped name: "
           f"{', '.join(sorted(p.stem for p in SHIPPED.glob('*.toml')))})")


def facet_labels(name: str, labels: Any, where: str) -> tuple[str, ...]:
    """A facet's labels, stripped and each once, checked as ``items tag`` and ``items describe`` both need them:
    some, not too many, none two differing only in case (for :func:`check_two` once the facet is read)."""
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r} needs labels = [non-empty strings]")
    out = tuple(dict.fromkeys(x.strip() for x in labels))
    if len(out) > MAX_LABELS:
        raise ValidationFailed(f"vocabulary {where}: facet {name!r} has {len(out)} labels; at most {MAX_LABELS} "
                               "(each is a prompt to encode and a score per item): split it or keep the common ones")
    seen: dict[str, str] = {}
    for label in out:  # "red" and "Red" split the softmax between two near-identical prompts
        first = seen.setdefault(label.casefold(), label)
        if first != label:
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: labels {first!r} and {label!r} differ only "
                                   "in case; keep one")
    return out


def check_two(name: str, labels: tuple[str, ...], where: str) -> None:
    """Refuse a facet of one label: its softmax is always 1.0, so every item would get it."""
    if len(labels) < 2:
        raise ValidationFailed(f"vocabulary {where}: facet {name!r} has one label ({labels[0]!r}), which every item "
                               "would get with score 1.0; give it two labels or more")


def check_lengths(vocabulary: dict[str, list[str]], where: str) -> None:
    """Refuse a facet name or a label longer than the store keeps (:data:`MAX_FACET_CHARS`,
    :data:`MAX_LABEL_CHARS`): ``items tag`` stores each whole."""
    def shown(x: str) -> str:
        return repr(x if len(x) <= 60 else x[:57] + "...")

    for facet, labels in vocabulary.items():
        if len(facet) > MAX_FACET_CHARS:
            raise ValidationFailed(f"vocabulary {where}: facet name {shown(facet)} has {len(facet)} characters; "
                                   f"`items tag` stores facet names of at most {MAX_FACET_CHARS}: shorten it")
        for label in labels:
            if len(label) > MAX_LABEL_CHARS:
                raise ValidationFailed(f"vocabulary {where}: facet {shown(facet)}: label {shown(label)} has "
                                       f"{len(label)} characters; `items tag` stores labels of at most "
                                       f"{MAX_LABEL_CHARS}: shorten it")


def no_repeats(where: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A ``json.loads`` object hook refusing a key given twice (JSON keeps the last one without a word)."""
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValidationFailed(f"vocabulary {where}: {key!r} is given twice; give it once")
            out[key] = value
        return out
    return hook


def _facets(pairs: Iterable[tuple[str, Any]], where: str) -> dict[str, list[str]]:
    """Facet -> labels, each facet checked (:func:`facet_labels`, :func:`check_two`)."""
    vocab: dict[str, list[str]] = {}
    written: dict[str, str] = {}
    for facet, raw in pairs:
        name = str(facet).strip()
        if not name:
            raise ValidationFailed(f"vocabulary {where}: a facet has no name")
        if name in written:  # "colour" and "colour ": one facet once stripped, so one list would replace the other
            raise ValidationFailed(f"vocabulary {where}: facet {name!r} is given twice (as {written[name]!r} and "
                                   f"{str(facet)!r}, alike but for spaces); give it once")
        written[name] = str(facet)
        labels = facet_labels(name, raw, where)
        check_two(name, labels, where)
        vocab[name] = list(labels)
    if not vocab:
        raise ValidationFailed(f"vocabulary {where} has no facets; it should hold {FORMATS}")
    check_lengths(vocab, where)
    return vocab


def _described(data: Any, where: str) -> dict[str, list[str]]:
    """The labels of an ``items describe`` vocabulary's facets (its sentence, prompts and words are describe's)."""
    facets = data.get("facets") if isinstance(data, dict) else None
    if not isinstance(facets, dict) or not facets:
        raise ValidationFailed(f"vocabulary {where}: needs a [facets] table with at least one facet")
    return _facets(((n, r.get("labels") if isinstance(r, dict) else r) for n, r in facets.items()), where)


def _lines(raw: str, where: str) -> dict[str, list[str]]:
    pairs: dict[str, tuple[int, list[str]]] = {}
    for n, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            raise ValidationFailed(f"vocabulary {where} line {n}: expected 'facet: label, label, ...'; "
                                   f"`items tag` reads {FORMATS}")
        facet, labels = (x.strip() for x in line.split(":", 1))
        if facet in pairs:  # the second line silently replaced the first
            raise ValidationFailed(f"vocabulary {where} line {n}: facet {facet!r} is given twice (first on line "
                                   f"{pairs[facet][0]}); put its labels on one line")
        pairs[facet] = (n, [x.strip() for x in labels.split(",") if x.strip()])
    return _facets(((f, ls) for f, (_, ls) in pairs.items()), where)


def read_vocabulary(spec: Path | str) -> dict[str, list[str]]:
    """Facet -> labels from a vocabulary file (:data:`FORMATS`) or a shipped vocabulary's name."""
    path = Path(spec)
    if not path.exists() and (SHIPPED / f"{spec}.toml").is_file():
        path = SHIPPED / f"{spec}.toml"
    try:
        raw = path.read_text(encoding="utf-8-sig")  # Notepad's byte-order mark hid the "{" of a JSON file
    except OSError as e:
        raise ValidationFailed(f"cannot read vocabulary {path}: {e.strerror}; `items tag` reads {FORMATS}") from e
    except UnicodeDecodeError as e:
        raise ValidationFailed(f"vocabulary {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                               "UTF-8") from e
    where = str(path)
    if path.suffix.lower() == ".toml":
        try:
            return _described(tomllib.loads(raw), where)
        except tomllib.TOMLDecodeError as e:
            raise ValidationFailed(f"vocabulary {path} cannot be parsed: {e}") from e
    if not raw.lstrip().startswith("{"):
        return _lines(raw, where)
    try:
        data = json.loads(raw, object_pairs_hook=no_repeats(where))
    except json.JSONDecodeError as e:
        raise ValidationFailed(f"vocabulary {path} is not valid JSON: {e}") from e
    if isinstance(data.get("facets"), dict):  # describe's JSON: its facets table (tag's maps facets to lists)
        return _described(data, where)
    return _facets(data.items(), where)


@dataclass
class TagReport:
    encoder_id: str
    items: int
    facets: int
    tags: int
    untagged: int = 0
    """Items with neither text nor image: nothing to tag them by."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_labels(item_vecs: np.ndarray, label_vecs: np.ndarray) -> np.ndarray:
    """(n, labels) softmax scores of unit item vectors against unit label vectors."""
    logits = item_vecs @ label_vecs.T / TEMPERATURE
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def tag_items(store: Store, settings: Settings, vocabulary: dict[str, list[str]], *, top_k: int = 1,
              progress: Callable[[int, int], None] | None = None) -> TagReport:
    """Zero-shot tags for every embedded item (run ``recsys embed`` first)."""
    from recsys.encoders.catalog import item_pks
    from recsys.encoders.vectors import load_item_vectors

    check_lengths(vocabulary, "given")  # before any work: read_vocabulary checked a file's already
    enc = get_encoder(settings)
    vecs = load_item_vectors(settings, store)
    probe = np.where(vecs.has_image[:, None], vecs.image, vecs.text)
    empty = np.linalg.norm(probe, axis=1) < 1e-6
    pks = item_pks(store, vecs.item_ids)
    empty_pks = sorted(pks[iid] for r, iid in enumerate(vecs.item_ids) if empty[r] and iid in pks)
    source = f"zero-shot:{enc.id}"[:200]
    total = 0
    for done, (facet, labels) in enumerate(vocabulary.items(), 1):
        scores = score_labels(probe, enc.encode_texts(labels))
        best = np.argsort(-scores, axis=1)[:, : max(1, min(top_k, len(labels)))]
        rows = [ItemTag(item_id=pks[iid], facet=facet, label=labels[j], score=float(scores[r, j]), source=source)
                for r, iid in enumerate(vecs.item_ids) if iid in pks and not empty[r] for j in best[r]]
        ids = sorted({r.item_id for r in rows})
        with store.session() as s:
            # Replace earlier zero-shot tags of this facet, and any tag that would collide with a new one.
            for i in range(0, len(ids), 500):
                s.execute(delete(ItemTag).where(
                    ItemTag.facet == facet, ItemTag.item_id.in_(ids[i : i + 500]),
                    or_(ItemTag.source.startswith("zero-shot:"), ItemTag.label.in_(labels))))
            for i in range(0, len(empty_pks), 500):  # arbitrary tags an earlier version gave them
                s.execute(delete(ItemTag).where(ItemTag.facet == facet, ItemTag.source.startswith("zero-shot:"),
                                                ItemTag.item_id.in_(empty_pks[i : i + 500])))
            s.add_all(rows)
        total += len(rows)
        if progress:
            progress(done, len(vocabulary))
    return TagReport(enc.id, len(vecs), len(vocabulary), total, untagged=int(empty.sum()))
