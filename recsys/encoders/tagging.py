"""Zero-shot tagging: ``recsys items tag --vocabulary FILE``.

For each facet of the vocabulary (colour, category, pattern, style...), every label is encoded as text and compared
with each item's image vector (its text vector when it has no image); the softmax over the facet's labels gives the
scores. The best ``top_k`` labels per facet are stored in ``ItemTag`` with ``source="zero-shot:<encoder id>"``,
replacing that source's earlier tags for the facet. An item with neither text nor image (a zero vector, whose scores
are uniform) gets no tags: any label would be arbitrary. Its earlier zero-shot tags are removed and it is counted.

Vocabulary files: JSON ``{"colour": ["black", "white", ...], ...}``, or text lines ``facet: label, label, ...``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
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


def read_vocabulary(path: Path) -> dict[str, list[str]]:
    try:
        raw = path.read_text(encoding="utf-8-sig")  # Notepad's byte-order mark hid the "{" of a JSON file
    except OSError as e:
        raise ValidationFailed(f"cannot read vocabulary {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ValidationFailed(f"vocabulary {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                               "UTF-8") from e
    vocab: dict[str, list[str]] = {}
    if raw.lstrip().startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValidationFailed(f"vocabulary {path} is not valid JSON: {e}") from e
        for facet, labels in data.items():
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise ValidationFailed(f"vocabulary {path}: facet {facet!r} must map to a list of strings")
            vocab[str(facet)] = labels
    else:
        for n, line in enumerate(raw.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if ":" not in line:
                raise ValidationFailed(f"vocabulary {path} line {n}: expected 'facet: label, label, ...'")
            facet, labels = line.split(":", 1)
            vocab[facet.strip()] = [x.strip() for x in labels.split(",") if x.strip()]
    vocab = {f: list(dict.fromkeys(ls)) for f, ls in vocab.items() if f and ls}
    if not vocab:
        raise ValidationFailed(f"vocabulary {path} has no facets with labels")
    return vocab


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
        rows = [ItemTag(item_id=pks[iid], facet=facet[:100], label=labels[j][:200], score=float(scores[r, j]),
                        source=source)
                for r, iid in enumerate(vecs.item_ids) if iid in pks and not empty[r] for j in best[r]]
        ids = sorted({r.item_id for r in rows})
        names = [x[:200] for x in labels]
        with store.session() as s:
            # Replace earlier zero-shot tags of this facet, and any tag that would collide with a new one.
            for i in range(0, len(ids), 500):
                s.execute(delete(ItemTag).where(
                    ItemTag.facet == facet[:100], ItemTag.item_id.in_(ids[i : i + 500]),
                    or_(ItemTag.source.startswith("zero-shot:"), ItemTag.label.in_(names))))
            for i in range(0, len(empty_pks), 500):  # arbitrary tags an earlier version gave them
                s.execute(delete(ItemTag).where(ItemTag.facet == facet[:100], ItemTag.source.startswith("zero-shot:"),
                                                ItemTag.item_id.in_(empty_pks[i : i + 500])))
            s.add_all(rows)
        total += len(rows)
        if progress:
            progress(done, len(vocabulary))
    return TagReport(enc.id, len(vecs), len(vocabulary), total, untagged=int(empty.sum()))
