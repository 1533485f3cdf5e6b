"""A tiny fashion catalogue with known answers: items are (type, colour) combinations, users stick to one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.ranking import RankingParams, SimpleVectors

TYPES = ["dress", "shoe", "hat", "bag"]
COLOURS = ["red", "blue", "green"]
DIM = 16


@dataclass
class World:
    items: pd.DataFrame
    vectors: SimpleVectors
    events: pd.DataFrame
    kind: dict[str, tuple[str, str]]
    basis: dict[str, np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_world(seed: int = 0, per_combo: int = 5, users_per_combo: int = 3, events_per_user: int = 8) -> World:
    rng = np.random.default_rng(seed)
    basis = {n: rng.normal(size=DIM) for n in TYPES + COLOURS}
    ids, kind, text, image = [], {}, [], []
    for t in TYPES:
        for c in COLOURS:
            for i in range(per_combo):
                iid = f"{t}-{c}-{i}"
                ids.append(iid)
                kind[iid] = (t, c)
                text.append(basis[t] + 0.6 * basis[c] + 0.3 * rng.normal(size=DIM))
                image.append(0.6 * basis[t] + basis[c] + 0.3 * rng.normal(size=DIM))
    t_v, i_v = _unit(np.array(text)), _unit(np.array(image))
    fused = _unit(t_v + i_v)
    vectors = SimpleVectors(ids, fused, t_v, i_v, "test-encoder")
    items = pd.DataFrame({
        "item_id": ids, "category": [kind[i][0] for i in ids], "price": rng.uniform(10, 50, len(ids)),
        "in_stock": True, "attributes": [{"colour": kind[i][1]} for i in ids],
    })
    rows = []
    start = pd.Timestamp("2024-01-01")
    u = 0
    for t in TYPES:
        for c in COLOURS:
            pool = [i for i in ids if kind[i] == (t, c)]
            for _ in range(users_per_combo):
                for e in range(events_per_user):
                    rows.append({"user_id": f"u{u}", "item_id": pool[rng.integers(len(pool))], "type": "purchase",
                                 "value": None, "ts": start + pd.Timedelta(days=int(e * 3 + rng.integers(3)))})
                u += 1
    events = pd.DataFrame(rows).sort_values("ts", kind="stable").reset_index(drop=True)
    return World(items, vectors, events, kind, basis)


def small_params(**kw: object) -> RankingParams:
    p = RankingParams(epochs=3, hidden=16, interest_k=10, content_k=8, cooc_k=10, trending_k=10, popular_k=10,
                      random_negatives=5, batch_anchors=16)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def user_events(items: list[str], start: str = "2024-03-01", types: list[str] | None = None) -> pd.DataFrame:
    ts = [pd.Timestamp(start) + pd.Timedelta(hours=i) for i in range(len(items))]
    return pd.DataFrame({"user_id": "x", "item_id": items, "type": types or ["purchase"] * len(items),
                         "value": None, "ts": ts})
