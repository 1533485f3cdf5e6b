"""Supervised probe: a facet's label predicted from the item's raw image-tower features by softmax regression.

The neighbour vote (:mod:`recsys.describe.transfer`) reads the catalogue's other items' field values through the
projected image vectors, which the heads shaped for text retrieval: neighbouring shades (off white / white, dark blue
/ black) sit close there. The raw tower features keep the early stages and the garment's colour statistics, where
those shades are apart, so a linear classifier fitted on the same labelled items (standardised features, L2 penalty,
L-BFGS) separates them better. Its class probabilities are mixed with the zero-shot and vote scores::

    score = (1 - probe_weight) * mix(zero_shot, votes) + probe_weight * probe

An item's own label never reaches the probe that scores it: when described items are among the labelled ones (a
whole-catalogue run), the labelled items are split in five folds by id and each item is scored by the probe fitted
without its fold (:func:`fit_folded`), as the vote leaves the item itself out.

With ``probe_hidden`` the probe gets one GELU layer first (AdamW, dropout), and the block "pixels" adds the photo's
CIELAB colour statistics (:mod:`recsys.describe.pixels`) to the tower features it reads.

Measured on H&M held out (README): the linear probe on the stages and colour blocks took colour exact shade from
0.678 to 0.711; the hidden layer and the pixel statistics to 0.735, and a hidden-layer probe on all the tower
features took garment type from 0.780 to 0.804 (with every H&M type of 15 articles or more in the vocabulary).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

WEIGHT_DECAY = 0.01
"""L2 penalty on the standardised features: 0.01 was best of (0.0001, 0.001, 0.01, 0.03) on a tuning split of H&M."""
MAX_ITER = 100
MLP_EPOCHS = 20
"""Passes of the one-hidden-layer probe (``probe_hidden``) over its training items (batches of 256)..."""
MLP_MIN_STEPS = 300
"""...but at least this many batches."""


def lite_blocks() -> dict[str, tuple[int, int]]:
    """Column ranges of the recsys-lite tower features by block (see :mod:`recsys.encoders.lite`)."""
    from recsys.encoders.lite import GRID, STAGE_DIMS

    widths = {"stages": sum(STAGE_DIMS), "bands": 3 * STAGE_DIMS[-1], "head": 1280, "colour": GRID**3 + 4}
    out, at = {}, 0
    for name, width in widths.items():
        out[name] = (at, at + width)
        at += width
    return out


def feature_columns(towers_id: str, dim: int, blocks: Sequence[str], pixels: int = 0) -> np.ndarray:
    """The feature columns a probe reads: the named blocks of the recsys-lite towers, every tower column for other
    towers (whose features are one pooled embedding) or when no tower block is named; with block "pixels" also the
    ``pixels`` columns of photo colour statistics that follow the ``dim`` tower columns (:mod:`.pixels`)."""
    layout = lite_blocks() if towers_id.startswith("recsys-lite-towers/") else {}
    extra = [np.arange(dim, dim + pixels)] if "pixels" in blocks and pixels else []
    named = [b for b in blocks if b in layout]
    if not named or max(e for _, e in layout.values()) != dim:
        return np.concatenate([np.arange(dim), *extra])
    return np.concatenate([np.arange(*layout[b]) for b in named] + extra)


@dataclass
class Probe:
    """A fitted softmax regression over ``columns`` of the features: (d,) mean and scale, (d, labels) weight,
    (labels,) bias; with ``hidden`` ((d, h) weight, (h,) bias) a GELU layer comes first, ``weight`` is then
    (h, labels)."""

    columns: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    hidden: tuple[np.ndarray, np.ndarray] | None = None

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(n, labels) class probabilities of (n, dim) tower features; all-zero rows (no image) get uniform ones."""
        z = (features[:, self.columns] - self.mean) / self.scale
        if self.hidden is not None:
            h = torch.as_tensor(z @ self.hidden[0] + self.hidden[1], dtype=torch.float32)
            z = torch.nn.functional.gelu(h).numpy()
        logits = z @ self.weight + self.bias
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        p[~np.abs(features).any(1)] = 1.0 / self.weight.shape[1]
        return p.astype(np.float32)


def fit_probe(features: np.ndarray, labels: np.ndarray, n_labels: int, columns: np.ndarray, *,
              weight_decay: float = WEIGHT_DECAY, max_iter: int = MAX_ITER, hidden: int = 0) -> Probe | None:
    """Fit on the rows whose label is >= 0 ((n, dim) features, (n,) label indices): softmax regression, or with
    ``hidden`` > 0 one GELU layer of that width first (:func:`fit_mlp`); None with fewer than two distinct labels
    (nothing to learn)."""
    keep = labels >= 0
    if len(np.unique(labels[keep])) < 2:
        return None
    x = torch.as_tensor(features[keep][:, columns], dtype=torch.float32)
    y = torch.as_tensor(labels[keep], dtype=torch.long)
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-4)
    z = (x - mean) / scale
    if hidden > 0:
        return fit_mlp(z, y, n_labels, hidden, columns, mean.numpy(), scale.numpy())
    w = torch.zeros(z.shape[1], n_labels, requires_grad=True)  # convex: any start reaches the same optimum
    b = torch.zeros(n_labels, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return Probe(columns, mean.numpy(), scale.numpy(), w.detach().numpy(), b.detach().numpy())


def fit_mlp(z: torch.Tensor, y: torch.Tensor, n_labels: int, hidden: int, columns: np.ndarray, mean: np.ndarray,
            scale: np.ndarray, *, epochs: int = MLP_EPOCHS, seed: int = 0) -> Probe:
    """One GELU layer on standardised features ``z``, AdamW with a one-cycle rate, dropout on the input (0.2) and
    the hidden layer (0.5); seeded, so a re-run gives the same probe."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(z.shape[1], hidden), torch.nn.GELU(),
                                  torch.nn.Dropout(0.5), torch.nn.Linear(hidden, n_labels))
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
        batches = -(-len(z) // 256)
        epochs = max(epochs, -(-MLP_MIN_STEPS // batches))  # a small catalogue: more passes, as many steps
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=epochs * batches)
        for _ in range(epochs):
            order = torch.randperm(len(z), generator=gen)
            for i in range(0, len(z), 256):
                b = order[i : i + 256]
                loss = torch.nn.functional.cross_entropy(net(z[b]), y[b])
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
    first, last = net[1], net[4]
    assert isinstance(first, torch.nn.Linear) and isinstance(last, torch.nn.Linear)
    to_np = lambda t: t.detach().numpy().copy()  # noqa: E731
    return Probe(columns, mean, scale, to_np(last.weight.T), to_np(last.bias),
                 (to_np(first.weight.T), to_np(first.bias)))


def _fold(item_ids: Sequence[str], folds: int) -> np.ndarray:
    return np.array([zlib.crc32(i.encode()) % folds for i in item_ids], dtype=np.int64)


@dataclass
class FoldedProbe:
    """One probe, or one per fold of item ids (see the module docstring); ``predict`` picks each row's. A fold
    that holds no described item has no probe (None): nothing is scored there, so it is never fitted."""

    probes: tuple[Probe | None, ...]

    def predict(self, features: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        fitted = [p for p in self.probes if p is not None]
        if len(self.probes) == 1:
            return fitted[0].predict(features)
        fold = _fold(item_ids, len(self.probes))
        out = np.empty((len(features), fitted[0].weight.shape[1]), np.float32)
        for f, probe in enumerate(self.probes):
            rows = fold == f
            if not rows.any():
                continue
            if probe is None:
                first = item_ids[int(np.argmax(rows))]
                raise ValueError(f"item {first!r} is in probe fold {f}, which was not fitted: only the items passed "
                                 "to fit_folded as described can be scored")
            out[rows] = probe.predict(features[rows])
        return out


def fit_folded(features: np.ndarray, labels: np.ndarray, item_ids: Sequence[str], described: Collection[str],
               n_labels: int, columns: np.ndarray, folds: int = 5, hidden: int = 0,
               progress: Callable[[int, int], None] | None = None) -> FoldedProbe | None:
    """A probe on all labelled rows when none of them is to be described, else one per fold that holds a described
    item (labelled or not), each fitted without the described items of its fold; None when such a fold has nothing
    to learn. Folds without a described item are not fitted: describing one item costs one fit, not ``folds``."""
    to_describe = np.isin(np.asarray(item_ids, dtype=object), np.asarray(list(described), dtype=object))
    if not to_describe.any():
        probe = fit_probe(features, labels, n_labels, columns, hidden=hidden)
        if progress:
            progress(1, 1)
        return FoldedProbe((probe,)) if probe is not None else None
    fold = _fold(item_ids, folds)
    # folds of every described id, labelled or not: an unlabelled one is scored by its fold's probe all the same
    wanted = sorted(set(_fold(list(described), folds).tolist()))
    probes: list[Probe | None] = [None] * folds
    for done, f in enumerate(wanted, 1):
        probe = fit_probe(features, np.where(to_describe & (fold == f), -1, labels), n_labels, columns,
                          hidden=hidden)
        if probe is None:
            return None
        probes[f] = probe
        if progress:
            progress(done, len(wanted))
    return FoldedProbe(tuple(probes))
