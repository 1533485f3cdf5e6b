""""More like these": retrieval from weighted positive and negative example items.

The rule (Rocchio-style, on unit vectors):

    q = normalise( sum_i w_i p_i / sum_i w_i  -  beta * sum_j u_j n_j / sum_j u_j )

where ``p_i`` are the positives' stored vectors with weights ``w_i > 0`` and ``n_j`` the negatives' with weights
``u_j > 0`` (``beta``, default 0.5, is how hard negatives push away). The examples themselves never come back, and
neither does any near-duplicate of a negative: a candidate whose cosine to some negative is at least
``negative_cutoff`` (default 0.95) is dropped, so "not this" also means "not a copy of this". The search over-fetches
by the number of negatives' neighbours it may have to drop, and still returns ``k`` when ``k`` qualify.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from recsys.errors import UnknownItem, ValidationFailed
from recsys.index.meta import ItemFilter
from recsys.index.reader import Hits, IndexReader

Examples = Mapping[str, float] | Sequence[str]


def _weights(examples: Examples | None, what: str) -> dict[str, float]:
    if not examples:
        return {}
    w = dict(examples) if isinstance(examples, Mapping) else {str(i): 1.0 for i in examples}
    bad = {i: x for i, x in w.items() if not np.isfinite(x) or x <= 0}
    if bad:
        raise ValidationFailed(f"{what} example weights must be positive numbers, got {bad}")
    return {str(i): float(x) for i, x in w.items()}


def example_query(reader: IndexReader, positive: Examples, negative: Examples | None = None, *,
                  beta: float = 0.5, modality: str = "fused") -> np.ndarray:
    """The query vector (d,) of the rule above. UnknownItem for an example the index does not serve."""
    pos, neg = _weights(positive, "positive"), _weights(negative, "negative")
    if not pos:
        raise ValidationFailed("'more like these' needs at least one positive example")
    vp, okp = reader.vectors_of(list(pos), modality)
    vn, okn = reader.vectors_of(list(neg), modality)
    missing = [i for i, ok in zip([*pos, *neg], [*okp, *okn], strict=True) if not ok]
    if missing:
        raise UnknownItem(f"example items not in the index (or without a {modality} vector): {missing[:10]}")
    # weighted means in float64, over weights scaled to their largest: a weight of 1e-300 is a valid tiny share,
    # not a float32 zero that turns the query into NaN
    wp = np.array(list(pos.values()), np.float64)
    wp /= wp.max()
    q = (wp[:, None] * vp).sum(0) / wp.sum()
    if neg:
        wn = np.array(list(neg.values()), np.float64)
        wn /= wn.max()
        q = q - beta * (wn[:, None] * vn).sum(0) / wn.sum()
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValidationFailed("the positive and negative examples cancel out; give fewer negatives or a lower beta")
    return (q / norm).astype(np.float32)


def more_like_these(reader: IndexReader, positive: Examples, negative: Examples | None = None, k: int = 20, *,
                    beta: float = 0.5, negative_cutoff: float = 0.95, modality: str = "fused",
                    filter: ItemFilter | None = None, exclude: Iterable[str] | None = None) -> Hits:
    """Top ``k`` items for the example rule above, examples and near-duplicates of negatives left out."""
    pos, neg = _weights(positive, "positive"), _weights(negative, "negative")
    both = sorted(set(pos) & set(neg))
    if both:  # its pull and push cancel in part: the caller meant one of them
        raise ValidationFailed(f"item(s) {', '.join(map(repr, both[:5]))} are both positive and negative examples; "
                               "give each item once")
    q = example_query(reader, pos, neg, beta=beta, modality=modality)
    skip = set(exclude or ()) | set(pos) | set(neg)
    vn = reader.vectors_of(list(neg), modality)[0] if neg else np.zeros((0, reader.dim), np.float32)
    fetch = k
    while True:
        hits = reader.search_one(q, fetch, skip, modality=modality, filter=filter)
        if len(vn):
            v, _ = reader.vectors_of([i for i, _ in hits], modality)
            near = (v @ vn.T).max(1) >= negative_cutoff if len(hits) else np.zeros(0, bool)
            kept = [h for h, bad in zip(hits, near, strict=True) if not bad]
        else:
            kept = hits
        if len(kept) >= k or len(hits) < fetch:
            return kept[:k]
        fetch *= 2
