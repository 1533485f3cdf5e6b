"""Training the ranker on stored events: anchors from each user's past, hard negatives from the candidate generator
plus random negatives, a listwise loss. Seeded: the same events, vectors and params give the same weights.

An anchor is a point in a user's history: the targets are the events at one timestamp (an H&M basket day, a
MovieLens rating), the history is everything strictly before it, exactly like the evaluation's leave-last-out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recsys.ranking.candidates import CandidateGenerator, Candidates
from recsys.ranking.catalog import ItemTable
from recsys.ranking.context import Context, make_context
from recsys.ranking.features import FEATURES, feature_matrix
from recsys.ranking.history import History
from recsys.ranking.model import NetConfig, RankerNet, listwise_loss
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats

log = logging.getLogger(__name__)

TRAIN_EXTRA_K = 40
CONSTANT_SCALE = float(np.finfo(np.float32).max)  # the scale of a feature constant in training: input 0
"""How far each source over-fetches past excluded items in training: what a served request for 20 does."""
Progress = Callable[[str, int, int | None], None]


@dataclass
class Example:
    """One request's model inputs (and labels when training)."""

    hist_rows: np.ndarray
    hist_types: np.ndarray
    hist_age: np.ndarray
    cand_rows: np.ndarray
    feats: np.ndarray
    labels: np.ndarray | None = None


def make_example(ctx: Context, cands: Candidates, table: ItemTable, known: np.ndarray,
                 p: RankingParams) -> Example:
    h = ctx.h
    L = min(len(h), p.max_history)
    rows = h.rows[len(h) - L:]
    age = np.log1p(np.clip(ctx.now - h.ts[len(h) - L:], 0, None)).astype(np.float32)
    return Example(rows, h.types[len(h) - L:], age, cands.rows, feature_matrix(ctx, cands, table, known, p))


def collate(batch: list[Example], vectors: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pad a list of examples into the network's tensors (see :mod:`recsys.ranking.model`)."""
    b = len(batch)
    L = max(1, max(len(e.hist_rows) for e in batch))
    C = max(1, max(len(e.cand_rows) for e in batch))
    F = batch[0].feats.shape[1]
    hr = np.zeros((b, L), np.int64)
    ht = np.full((b, L), 0, np.int64)
    ha = np.zeros((b, L), np.float32)
    hm = np.zeros((b, L), bool)
    cr = np.zeros((b, C), np.int64)
    cf = np.zeros((b, C, F), np.float32)
    cm = np.zeros((b, C), bool)
    lab = np.zeros((b, C), np.float32)
    for i, e in enumerate(batch):
        n, c = len(e.hist_rows), len(e.cand_rows)
        hr[i, :n], ht[i, :n], ha[i, :n], hm[i, :n] = e.hist_rows, e.hist_types, e.hist_age, True
        cr[i, :c], cf[i, :c], cm[i, :c] = e.cand_rows, e.feats, True
        if e.labels is not None:
            lab[i, :c] = e.labels
    t = torch.from_numpy
    return {
        "hist_vec": vectors[t(hr)], "hist_type": t(ht), "hist_age": t(ha), "hist_mask": t(hm),
        "cand_vec": vectors[t(cr)], "cand_feat": t(cf), "cand_mask": t(cm), "labels": t(lab),
    }


def build_examples(histories: dict[str, History], table: ItemTable, stats: ItemStats, gen: CandidateGenerator,
                   known: np.ndarray, p: RankingParams, repurchase: bool,
                   progress: Progress | None = None) -> list[Example]:
    """Training examples: up to ``anchors_per_user`` latest anchors per user, positives among the candidates."""
    rng = np.random.default_rng(p.seed)
    anchors: list[tuple[str, int, int]] = []
    for u in sorted(histories):
        h = histories[u]
        if len(h) < 2:
            continue
        starts = np.flatnonzero(np.r_[False, h.ts[1:] != h.ts[:-1]])  # first event of each later timestamp
        for s in starts[::-1][: p.anchors_per_user]:
            e = int(np.searchsorted(h.ts, h.ts[s], side="right"))
            anchors.append((u, int(s), e))
    if len(anchors) > p.max_anchors:
        keep = np.sort(rng.choice(len(anchors), p.max_anchors, replace=False))
        anchors = [anchors[i] for i in keep]
    out: list[Example] = []
    t0 = time.time()
    for k, (u, s, e) in enumerate(anchors):
        h = histories[u]
        prefix = h.prefix(s).latest(p.max_events)  # what a request at that time reads
        ctx = make_context(prefix, float(h.ts[s]), stats, p)
        cands = anchor_candidates(gen, ctx, table, repurchase)
        targets = set(h.rows[s:e].tolist()) - (set() if repurchase else set(prefix.rows.tolist()))
        labels = np.fromiter((r in targets for r in cands.rows), dtype=bool, count=len(cands))
        if not labels.any() and not (p.missed_positives and targets):
            continue
        # missed ones are found before the cap, which may drop positives that a source did produce
        missed = np.array(sorted(targets - set(cands.rows.tolist())), dtype=np.int64) if p.missed_positives else None
        cands, labels = _cap(cands, labels, p.max_candidates, rng)
        if missed is not None:
            cands, labels = _append(cands, labels, missed, True)
        cands, labels = _add_random(cands, labels, table, targets, p.random_negatives, rng)
        ex = make_example(ctx, cands, table, known, p)
        ex.labels = labels.astype(np.float32)
        out.append(ex)
        if progress and k % 200 == 0:
            progress("anchors", k, len(anchors))  # an anchor without a positive candidate makes no example
    if progress:
        progress("anchors", len(anchors), len(anchors))
    log.info("ranker: %d training examples from %d anchors in %.1fs", len(out), len(anchors), time.time() - t0)
    return out


NO_NET_FALLBACK = "candidate order"
"""How a ranker without a network ranks (:meth:`RankingPipeline.scores`): by the candidates' best source rank."""


def no_network(histories: dict[str, History], p: RankingParams, n_events: int) -> dict[str, str]:
    """The manifest fields of a ranker fitted on no example, logged: why there was none, in words with what to do
    (an example is a user's events at one time predicted from their strictly earlier ones)."""
    fix = "then run `recsys train` again"
    pos = [h for h in histories.values() if len(h)]
    timed = sum(len(np.unique(h.ts)) >= 2 for h in pos)
    if not n_events:
        why = f"no events are stored; import events (`recsys import events FILE`), {fix}"
    elif not histories:
        why = f"none of the {n_events} events is on an item of the index; import events on catalogue items, {fix}"
    elif p.max_anchors < 1 or p.anchors_per_user < 1:
        why = f"max_anchors or anchors_per_user is 0; set them to at least 1 (RECSYS_RANKING__PARAMS), {fix}"
    elif not pos:
        why = (f"all {len(histories)} users have only dislikes, and dislikes do not count as a target; import "
               f"views, purchases or likes, {fix}")
    elif not timed:
        single = sum(len(h) == 1 for h in pos)
        counts = [f"{n} of {len(pos)} {what}" for n, what in ((single, "have one event"),
                  (len(pos) - single, "have all theirs at one time")) if n]
        why = (f"no user has positive events at two distinct times ({', '.join(counts)}; dislikes do not count), "
               f"and each example predicts a user's later events from their earlier ones: import more events, with "
               f"their real times, {fix}")
    else:
        why = (f"the candidate sources proposed none of the later items of the {timed} users with events at two "
               f"distinct times (too small a catalogue or history?); import more events, {fix}")
    log.warning("ranker: no training examples: %s; it has no network and ranks in %s", why, NO_NET_FALLBACK)
    return {"fallback": NO_NET_FALLBACK, "no_network_reason": why}


def anchor_candidates(gen: CandidateGenerator, ctx: Context, table: ItemTable, repurchase: bool) -> Candidates:
    """A training anchor's candidates, excluded as a served request for 20 excludes them (the shopper's own items
    without repurchase, every disliked one) before the sources rank their lists: dropped afterwards, they would
    leave ranks and list lengths that no served request has."""
    h = ctx.h
    exclude = {table.ids[r] for r in h.disliked} | (set() if repurchase else {table.ids[r] for r in h.rows})
    return gen.generate(ctx, exclude, TRAIN_EXTRA_K if exclude else 0)


def _cap(c: Candidates, labels: np.ndarray, cap: int, rng: np.random.Generator) -> tuple[Candidates, np.ndarray]:
    """At most ``cap`` candidates: every positive and random negatives; a sample of the positives alone when they
    are more than ``cap`` (a big basket, or a small ``max_candidates``)."""
    if len(c) <= cap:
        return c, labels
    pos = np.flatnonzero(labels)
    neg = np.flatnonzero(~labels)
    if len(pos) > cap:
        keep = np.sort(rng.choice(pos, cap, replace=False))
        return c.take(keep), labels[keep]
    keep = np.sort(np.r_[pos, rng.choice(neg, cap - len(pos), replace=False)])
    return c.take(keep), labels[keep]


def _add_random(c: Candidates, labels: np.ndarray, table: ItemTable, targets: set[int], n: int,
                rng: np.random.Generator) -> tuple[Candidates, np.ndarray]:
    if n <= 0:
        return c, labels
    r = rng.integers(0, table.n, size=n)
    r = np.unique(r[~np.isin(r, c.rows) & ~np.isin(r, list(targets))])
    return _append(c, labels, r, False)


def _append(c: Candidates, labels: np.ndarray, rows: np.ndarray, label: bool) -> tuple[Candidates, np.ndarray]:
    """Add rows that no source produced (flags 0, ranks absent)."""
    flags = np.zeros((len(rows), c.flags.shape[1]), np.float32)
    ranks = np.full((len(rows), c.flags.shape[1]), 1000.0, np.float32)
    return (Candidates(np.r_[c.rows, rows], np.r_[c.flags, flags], np.r_[c.ranks, ranks]),
            np.r_[labels, np.full(len(rows), label)])


def fit_net(examples: list[Example], vectors: np.ndarray, p: RankingParams,
            progress: Progress | None = None) -> tuple[RankerNet, dict[str, float]]:
    """Train the network on the examples; returns it in eval mode and the training metrics."""
    torch.manual_seed(p.seed)
    rng = np.random.default_rng(p.seed)
    vec = torch.from_numpy(np.asarray(vectors, np.float32))
    net = RankerNet(NetConfig(dim=vec.shape[1], n_features=len(FEATURES), hidden=p.hidden,
                              content=p.content_pathway))
    if examples:
        allf = np.concatenate([e.feats for e in examples])
        net.feat_mean.copy_(torch.from_numpy(allf.mean(0)))
        std = allf.std(0)
        # a feature constant in training (e.g. no item was new when it was fitted) teaches its weights nothing:
        # the largest finite scale makes its input 0 in training and at serving alike, instead of a seed-random
        # shift (not +inf: releases before 2026-12-06 refuse a non-finite weight as damaged, and a rollback
        # to one of them would serve no recommendations)
        net.feat_std.copy_(torch.from_numpy(np.where(std > 1e-6, std, CONSTANT_SCALE).astype(np.float32)))
    opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    steps = max(1, p.epochs * ((len(examples) + p.batch_anchors - 1) // p.batch_anchors))
    # one-cycle needs a few steps per phase (a tiny log would divide by zero): plain Adam below that
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=steps, pct_start=0.1) \
        if steps >= 20 else None
    net.train()
    last = float("nan")
    step = 0
    for epoch in range(p.epochs):
        order = rng.permutation(len(examples))
        losses = []
        for i in range(0, len(order), p.batch_anchors):
            batch = collate([examples[j] for j in order[i: i + p.batch_anchors]], vec)
            scores = net(batch["hist_vec"], batch["hist_type"], batch["hist_age"], batch["hist_mask"],
                         batch["cand_vec"], batch["cand_feat"])
            loss = listwise_loss(scores, batch["labels"], batch["cand_mask"])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            losses.append(float(loss.detach()))
        last = float(np.mean(losses)) if losses else float("nan")
        log.info("ranker epoch %d: loss %.4f", epoch + 1, last)
        if progress:
            progress("epochs", epoch + 1, p.epochs)
    net.eval()
    return net, {"train_loss": round(last, 5), "examples": float(len(examples)), "steps": float(step)}


@torch.no_grad()
def score(net: RankerNet, examples: list[Example], vectors: torch.Tensor) -> list[np.ndarray]:
    """Scores for each example's candidates."""
    if not examples:
        return []
    batch = collate(examples, vectors)
    s = net(batch["hist_vec"], batch["hist_type"], batch["hist_age"], batch["hist_mask"], batch["cand_vec"],
            batch["cand_feat"]).numpy()
    return [s[i, : len(e.cand_rows)] for i, e in enumerate(examples)]
