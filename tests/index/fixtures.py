"""Tiny known-answer catalogues for the index tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from recsys.index import ItemMeta
from recsys.store import Store
from recsys.store.tables import Item


@dataclass
class FakeVectors:
    """What ``build_from_catalog`` reads of an embedded catalogue (:class:`recsys.index.catalog.ItemVectorsLike`)."""

    item_ids: list[str]
    fused: np.ndarray
    text: np.ndarray
    image: np.ndarray
    has_image: np.ndarray
    encoder_id: str = "fake-enc"


def store_vectors(store: Store, vector_of: Callable[[str], np.ndarray], *, live_only: bool = True) -> FakeVectors:
    """One vector per stored item (those not deleted, with ``live_only``), from its id, in every modality."""
    q = select(Item.external_id).order_by(Item.id)
    with store.session() as s:
        ids = list(s.scalars(q.where(Item.deleted.is_(False)) if live_only else q))
    v = np.stack([vector_of(i) for i in ids]).astype(np.float32)
    return FakeVectors(ids, v, v.copy(), v.copy(), np.ones(len(ids), bool))


def clustered(n: int, d: int = 16, *, centres: int = 8, spread: float = 0.3, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``centres`` random directions (float32, (n, d))."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d))
    x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def ids(n: int, prefix: str = "i") -> list[str]:
    return [f"{prefix}{j:05d}" for j in range(n)]


def meta_for(item_ids: list[str], seed: int = 0) -> ItemMeta:
    """Categories c0..c9 by position (c9 = 1 row in 100 when n % 100 == 0: j % 100 == 99), prices 0..99, every
    third item out of stock, attribute colour red/blue alternating."""
    n = len(item_ids)
    return ItemMeta.build(
        item_ids,
        category=["rare" if j % 100 == 99 else f"c{j % 9}" for j in range(n)],
        price=[float(j % 100) for j in range(n)],
        in_stock=[j % 3 != 0 for j in range(n)],
        attributes=[{"colour": "red" if j % 2 else "blue", "size": j % 5} for j in range(n)],
        content_hash=[f"h{j}" for j in range(n)],
        updated_at=["2026-01-01T00:00:00"] * n,
    )


def exact(vectors: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
    s = vectors @ (q / np.linalg.norm(q))
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    order = np.argsort(-s, kind="stable")[:k]
    return [int(r) for r in order if np.isfinite(s[r])]
