"""Label transfer: a facet's label for an item, voted by its image neighbours among the catalogue's other items.

A facet of the vocabulary may name a catalogue ``field`` (``category``, ``attributes.colour``...) whose values, on
other items, are its labels (compared lower-cased, with "/", "-" and "_" as spaces; of a list value, its first element
that is a label). Those items are the image-text
training the issue asks for: each described item's image vector is compared with theirs, and its ``k`` nearest
(cosine, itself always left out, as are the items in ``exclude``) vote for their own label with weight
``exp(similarity / temperature)``. The normalised votes are mixed with the zero-shot softmax::

    score = (1 - weight) * zero_shot + weight * votes

Only the neighbours' fields are read, never the described item's own (it is left out of the vote).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.encoders.text import ItemRecord

TEMPERATURE = 0.05
"""Vote sharpness: measured on H&M (0.02 gave the nearest neighbour too much say; 0.05 was best)."""


def normalise(value: object) -> str:
    """How labels and field values are compared: "Leggings/Tights" == "leggings tights"."""
    return " ".join(re.sub(r"[/\-_]", " ", str(value or "")).lower().split())


def field_values(item: ItemRecord, field: str) -> tuple[str, ...]:
    """The item's values of ``category``, ``title`` or ``attributes.<key>``, normalised: one for a plain value, each
    element of a list-valued attribute (MovieLens's ``genres``), none when absent or empty."""
    if field.startswith("attributes."):
        value = item.attributes.get(field.removeprefix("attributes."))
    else:
        value = getattr(item, field, "") if field in ("category", "title") else ""
    values = value if isinstance(value, list | tuple) else [value]
    return tuple(v for v in (normalise(x) for x in values if not isinstance(x, dict | list | tuple)) if v)


def field_value(item: ItemRecord, field: str) -> str:
    """The item's first value of ``field`` (:func:`field_values`; "" when it has none)."""
    values = field_values(item, field)
    return values[0] if values else ""


@dataclass
class LabelSource:
    """The items whose field values serve as labels: their unit image vectors (n, d) and ids, per facet the
    label index of each (-1: the item's value is not one of the facet's labels), and their raw tower features
    (n, image_dim) where a facet's probe needs them."""

    item_ids: list[str]
    vectors: np.ndarray
    labels: dict[str, np.ndarray]
    features: np.ndarray | None = None


def label_indices(items: Sequence[ItemRecord], field: str, labels: Sequence[str]) -> np.ndarray:
    """(n,) int: the index of each item's ``field`` value among ``labels``, -1 where it is none of them; for a list
    value, its first element that is a label (["Animation", "Comedy"] votes "animation" where both are labels)."""
    index = {normalise(x): j for j, x in enumerate(labels)}
    return np.array([next((index[v] for v in field_values(it, field) if v in index), -1) for it in items],
                    dtype=np.int64)


def candidate_items(items: Sequence[ItemRecord], fields: Collection[str],
                    exclude: Collection[str] = ()) -> list[ItemRecord]:
    """Items that can vote: with an image and a value of one of ``fields``, not in ``exclude``."""
    out = set(exclude)
    return [it for it in items if it.media and it.item_id not in out and any(field_values(it, f) for f in fields)]


def neighbour_votes(query: np.ndarray, query_ids: Sequence[str], source: LabelSource, facet: str,
                    n_labels: int, k: int, temperature: float = TEMPERATURE) -> np.ndarray:
    """(n, n_labels) vote shares of each query row's ``k`` nearest labelled source items, the row's own item left
    out; a row with no labelled neighbour (or a zero vector) gets uniform shares."""
    labels = source.labels[facet]
    rows = np.flatnonzero(labels >= 0)
    out = np.full((len(query), n_labels), 1.0 / n_labels, np.float32)
    if not len(rows) or not len(query):
        return out
    sims = query @ source.vectors[rows].T
    ids = np.asarray(source.item_ids, dtype=object)[rows]
    sims[np.asarray(query_ids, dtype=object)[:, None] == ids[None, :]] = -np.inf  # never its own label
    k = min(k, len(rows))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, 1)
    finite = np.isfinite(top_sims)
    best = np.where(finite, top_sims, -np.inf).max(1, keepdims=True)
    weights = np.where(finite, np.exp((top_sims - np.where(np.isfinite(best), best, 0.0)) / temperature), 0.0)
    votes = np.zeros((len(query), n_labels), np.float64)
    np.add.at(votes, (np.repeat(np.arange(len(query)), k), labels[rows][top].ravel()), weights.ravel())
    total = votes.sum(1, keepdims=True)
    has = (total[:, 0] > 0) & (np.abs(query).sum(1) > 0)
    out[has] = (votes[has] / total[has]).astype(np.float32)
    return out


def mix(zero_shot: np.ndarray, votes: np.ndarray, weight: float) -> np.ndarray:
    """The zero-shot softmax and the neighbours' vote shares, mixed (both sum to 1 per row, so does the mix)."""
    return (1.0 - weight) * zero_shot + weight * votes
