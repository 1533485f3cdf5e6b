"""The ranker network's forward for one request at a time, in numpy, from the same weights.

Serving ranks one request of a few hundred candidates per call: there torch's per-operator dispatch (about 30 small
kernels, each with a few microseconds of overhead, plus padding the request into a batch) costs more than the
arithmetic. This module copies the fitted weights once per network and runs the ``light`` and ``none`` content
pathways of :class:`~recsys.ranking.model.RankerNet` as a handful of numpy calls on the unpadded request; its scores
equal the torch forward's within 1e-5 (tested). The ``deep`` pathway (a transformer layer) stays in torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from recsys.ranking.model import RankerNet

_SQRT2 = math.sqrt(2.0)


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch's default (exact, erf) GELU. The erf is torch's on the same memory: scipy's float32 erf is ~8x slower,
    and one call's dispatch is nothing beside that."""
    return 0.5 * x * (1.0 + torch.special.erf(torch.from_numpy(x / _SQRT2)).numpy())


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


@dataclass(frozen=True)
class NumpyRanker:
    """The fitted weights of a light (or feature-only) :class:`RankerNet`, as numpy arrays."""

    feat_mean: np.ndarray
    feat_std: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    """The MLP's three linear layers, (weight.T, bias), with GELU between them."""
    wide: tuple[np.ndarray, np.ndarray]
    tau: np.ndarray | None = None
    type_bias: np.ndarray | None = None
    age_w: np.ndarray | None = None

    @classmethod
    def of(cls, net: RankerNet) -> NumpyRanker | None:
        """The numpy twin of ``net`` (in eval mode), or None for a pathway it does not cover (``deep``)."""
        if net.cfg.content not in ("light", "none"):
            return None
        linears = [m for m in net.mlp if isinstance(m, torch.nn.Linear)]
        layers = tuple((_np(m.weight).T.copy(), _np(m.bias)) for m in linears)
        wide = (_np(net.wide.weight).T.copy(), _np(net.wide.bias))
        light = {}
        if net.cfg.content == "light":
            light = {"tau": _np(net.tau), "type_bias": _np(net.type_bias.weight), "age_w": _np(net.age_w)}
        return cls(_np(net.feat_mean), _np(net.feat_std), layers, wide, **light)

    def __call__(self, hist_vec: np.ndarray, hist_type: np.ndarray, hist_age: np.ndarray, cand_vec: np.ndarray,
                 cand_feat: np.ndarray, *, unit: bool = False) -> np.ndarray:
        """Scores (C,) for one request: ``hist_vec`` (L, d), ``hist_type`` (L,), ``hist_age`` (L,),
        ``cand_vec`` (C, d), ``cand_feat`` (C, F); L may be 0. ``unit``: the vectors are L2-normalised already
        (:func:`unit_rows` of the catalogue, once), so the request skips it."""
        f = np.clip((cand_feat - self.feat_mean) / self.feat_std, -5.0, 5.0)
        if self.tau is not None:
            if not unit:
                hist_vec, cand_vec = unit_rows(hist_vec), unit_rows(cand_vec)
            f = np.concatenate([f, self._light(hist_vec, hist_type, hist_age, cand_vec)], axis=1)
        x = f.astype(np.float32, copy=False)
        (w1, b1), (w2, b2), (w3, b3) = self.layers
        deep = _gelu(_gelu(x @ w1 + b1) @ w2 + b2) @ w3 + b3
        return (deep + x @ self.wide[0] + self.wide[1])[:, 0]

    def _light(self, hist_vec: np.ndarray, hist_type: np.ndarray, hist_age: np.ndarray,
               cand_vec: np.ndarray) -> np.ndarray:
        assert self.tau is not None and self.type_bias is not None and self.age_w is not None
        heads = len(self.tau)
        if len(hist_vec) == 0:  # torch masks the one padded slot away: both pathway outputs are 0
            return np.zeros((len(cand_vec), 2 * heads), np.float32)
        # laid out (C, H, L), unlike torch's (C, L, H): every reduction runs over the contiguous last axis
        sims = cand_vec @ hist_vec.T  # (C, L), the vectors of unit length
        bias = (self.type_bias[hist_type] + hist_age[:, None] * self.age_w).T  # (H, L)
        logits = sims[:, None, :] * self.tau[None, :, None] + bias[None]  # (C, H, L)
        att = np.exp(logits - logits.max(axis=2, keepdims=True))
        att /= att.sum(axis=2, keepdims=True)
        out = np.matmul(att, sims[:, :, None])[:, :, 0]  # (C, H)
        peak = (att * logits).sum(axis=2) / np.maximum(np.abs(self.tau), 1e-3)
        return np.concatenate([out, peak], axis=1)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as torch's ``F.normalize`` (eps 1e-12)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
