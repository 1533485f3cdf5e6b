"""A behaviour-aware item space fitted on content only: "bought with / instead of", which carries to unsold items.

The encoder's spaces say what an item *is*; a shopper's next purchase is often something else that goes with the
last ones (a top after trousers, a bigger size of a baby bodysuit). :class:`CobuyProjection` learns a linear map of
each item's content vectors (description text and image) under which items bought by the same shopper within a few
days are near each other (symmetric InfoNCE over in-batch negatives, the ItemSage / two-tower recipe). It sees only
content, so an article nobody has bought yet gets a place in the space from its description and photo alone.

The ranker uses it twice: as a candidate source (``cobuy``: nearest items to the latest purchases) and as features
(similarity to the history). Training examples must not see a projection fitted on their own targets, so the ranker
fits one projection per half of the users and gives each half the other half's (:func:`out_of_fold`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch
import torch.nn.functional as F

from recsys.errors import IncompatibleArtifact
from recsys.ranking.catalog import ItemTable
from recsys.ranking.history import History, day_of

log = logging.getLogger(__name__)


def content_inputs(table: ItemTable) -> np.ndarray:
    """(n, d_in) float32: the item's description vector, then its image vector (zeros without a photo)."""
    parts = [table.content]
    if table.image is not None and table.image.shape[0] == table.n and table.image is not table.content:
        parts.append(table.image)
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def cobuy_pairs(histories: Mapping[str, History], window_days: float, max_per_user: int,
                rng: np.random.Generator) -> np.ndarray:
    """(m, 2) row pairs: two different items one shopper took within ``window_days`` of each other."""
    out: list[np.ndarray] = []
    for u in sorted(histories):
        h = histories[u]
        if len(h) < 2:
            continue
        i, j = np.triu_indices(len(h), k=1)
        keep = (np.abs(h.ts[j] - h.ts[i]) <= window_days) & (h.rows[i] != h.rows[j])
        pairs = np.stack([h.rows[i[keep]], h.rows[j[keep]]], axis=1)
        if len(pairs) > max_per_user:  # a few heavy shoppers must not define the space
            pairs = pairs[rng.choice(len(pairs), max_per_user, replace=False)]
        out.append(pairs)
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


@dataclass
class CobuyProjection:
    """``weight`` (d_in, d): item content -> the co-purchase space; rows of the result are L2-normalised."""

    weight: np.ndarray

    def transform(self, table: ItemTable) -> np.ndarray:
        x = content_inputs(table)
        if x.shape[1] != self.weight.shape[0]:
            raise IncompatibleArtifact(f"the ranker's co-purchase space takes {self.weight.shape[0]}-d item content, "
                                       f"these item vectors give {x.shape[1]}-d; retrain it with `recsys train`")
        z = x @ self.weight
        n = np.linalg.norm(z, axis=1, keepdims=True)
        return np.divide(z, n, out=np.zeros_like(z), where=n > 0).astype(np.float32)

    @classmethod
    def fit(cls, table: ItemTable, histories: Mapping[str, History], *, dim: int = 128, window_days: float = 14.0,
            max_per_user: int = 300, max_pairs: int = 60_000, epochs: int = 30, temperature: float = 0.07,
            seed: int = 0, min_pairs: int = 200) -> CobuyProjection | None:
        """Fit on the co-purchases of ``histories``; None when there are too few pairs to learn from."""
        rng = np.random.default_rng(seed)
        pairs = cobuy_pairs(histories, window_days, max_per_user, rng)
        if len(pairs) > max_pairs:  # bounds the fit's time on a big shop (H&M's sample has 57,000)
            pairs = pairs[np.sort(rng.choice(len(pairs), max_pairs, replace=False))]
        if len(pairs) < min_pairs:
            log.info("co-purchase space: %d pairs, too few to fit (need %d)", len(pairs), min_pairs)
            return None
        x = torch.from_numpy(content_inputs(table))
        gen = torch.Generator().manual_seed(seed)
        w = torch.nn.Parameter(torch.randn(x.shape[1], dim, generator=gen) / np.sqrt(x.shape[1]))
        opt = torch.optim.Adam([w], lr=3e-3, weight_decay=1e-6)
        p = torch.from_numpy(pairs)
        batch = min(1024, len(pairs))
        for _ in range(epochs):
            order = torch.randperm(len(p), generator=gen)
            for s in range(0, len(p) - batch + 1, batch):
                b = p[order[s: s + batch]]
                za = F.normalize(x[b[:, 0]] @ w, dim=1)
                zb = F.normalize(x[b[:, 1]] @ w, dim=1)
                logits = za @ zb.T / temperature
                # the same item may sit in a batch twice: its copies are not negatives of each other
                same = (b[:, 1][None, :] == b[:, 1][:, None]) & ~torch.eye(len(b), dtype=torch.bool)
                logits = logits.masked_fill(same, -1e4)
                target = torch.arange(len(b))
                loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()
        log.info("co-purchase space: %d pairs, final loss %.3f", len(pairs), float(loss.detach()))
        return cls(w.detach().numpy().astype(np.float32))


def fold_of(user_id: str) -> int:
    """0 or 1, stable across runs and processes (not Python's salted hash)."""
    return zlib.crc32(user_id.encode("utf-8")) & 1


def out_of_fold(table: ItemTable, histories: Mapping[str, History], before: datetime | None = None,
                **fit_args: float | int) -> tuple[CobuyProjection | None, dict[int, np.ndarray | None]]:
    """The projection fitted on everyone (served; on the events before ``before`` only, when given) and, per fold
    of users, item vectors from the projection fitted on the *other* fold (for that fold's training examples, whose
    targets it never saw). The folds' spaces are cut at ``before`` too: fitted on pairs after it, they would give
    the training examples a space the served one is not. (An anchor earlier than the cut still meets other shoppers'
    later pairs: the space is fitted per fold, not per time; it is opt-in for that reason among others.)"""
    if before is not None:
        cut = day_of(before)
        assert cut is not None
        histories = {u: h.prefix(int(np.searchsorted(h.ts, cut, side="left"))) for u, h in histories.items()}
    folds: dict[int, np.ndarray | None] = {}
    for f in (0, 1):
        other = {u: h for u, h in histories.items() if fold_of(u) != f}
        proj = CobuyProjection.fit(table, other, **fit_args)  # type: ignore[arg-type]
        folds[f] = proj.transform(table) if proj is not None else None
    return CobuyProjection.fit(table, histories, **fit_args), folds  # type: ignore[arg-type]
