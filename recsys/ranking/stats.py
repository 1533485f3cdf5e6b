"""Interaction statistics fitted on the training events: popularity, first sale, trending windows, co-occurrence.

Everything is kept by item id so the statistics survive catalogue updates (:meth:`ItemStats.aligned`): a new item
simply has no interactions yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.ranking.history import History


def sequence_pairs(rows: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (i, j), i != j, of items at most ``window`` positions apart in one sequence (both directions)."""
    n = len(rows)
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    for off in range(1, min(window, n - 1) + 1):
        a.append(rows[:-off])
        b.append(rows[off:])
    if not a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.concatenate(a)
    j = np.concatenate(b)
    keep = i != j
    i, j = i[keep], j[keep]
    return np.concatenate([i, j]), np.concatenate([j, i])


@dataclass
class ItemStats:
    """Statistics over the rows of the catalogue they were aligned to (``ids``)."""

    ids: list[str]
    ev_ts: np.ndarray
    """Positive event times (days), sorted."""
    ev_row: np.ndarray
    """Item row of each event in ``ev_ts``."""
    pop: np.ndarray
    """Positive events per item (float64)."""
    users: np.ndarray
    """Distinct users per item."""
    first_ts: np.ndarray
    """First positive event per item, +inf when none."""
    cooc: sp.csr_matrix
    """Item x item co-occurrence within ``window`` positions of a user's sequence."""
    window: int
    end_ts: float
    """Time of the last training event."""

    @classmethod
    def fit(cls, ids: list[str], histories: dict[str, History], window: int = 20) -> ItemStats:
        n = len(ids)
        ts_parts, row_parts, pi, pj = [], [], [], []
        users = np.zeros(n)
        for h in histories.values():
            if not len(h):
                continue
            ts_parts.append(h.ts)
            row_parts.append(h.rows)
            users[np.unique(h.rows)] += 1
            i, j = sequence_pairs(_dedup_consecutive(h.rows), window)
            pi.append(i)
            pj.append(j)
        ev_ts = np.concatenate(ts_parts) if ts_parts else np.zeros(0)
        ev_row = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
        order = np.argsort(ev_ts, kind="stable")
        ev_ts, ev_row = ev_ts[order], ev_row[order]
        pop = np.bincount(ev_row, minlength=n).astype(np.float64)
        first = np.full(n, np.inf)
        np.minimum.at(first, ev_row, ev_ts)
        i = np.concatenate(pi) if pi else np.zeros(0, np.int64)
        j = np.concatenate(pj) if pj else np.zeros(0, np.int64)
        cooc = sp.csr_matrix((np.ones(len(i), np.float32), (i, j)), shape=(n, n))
        cooc.sum_duplicates()
        end = float(ev_ts[-1]) if len(ev_ts) else 0.0
        return cls(list(ids), ev_ts, ev_row, pop, users, first, cooc, window, end)

    # -- queries --------------------------------------------------------------------------------------------
    def window_counts(self, now: float, days: float) -> np.ndarray:
        """Positive events per item in [now - days, now), clamped to the training period."""
        hi = np.searchsorted(self.ev_ts, min(now, self.end_ts + 1e-6), side="left")
        lo = np.searchsorted(self.ev_ts, min(now, self.end_ts + 1e-6) - days, side="left")
        return np.bincount(self.ev_row[lo:hi], minlength=len(self.ids)).astype(np.float64)

    def cooc_scores(self, query: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Sum over query rows of weight * co-occurrence, as a dense (n,) array."""
        if len(query) == 0:
            return np.zeros(len(self.ids))
        w = sp.csr_matrix((weights.astype(np.float32), (np.zeros(len(query), np.int64), query)),
                          shape=(1, len(self.ids)))
        return np.asarray((w @ self.cooc).todense()).ravel().astype(np.float64)

    # -- catalogue changes and persistence -------------------------------------------------------------------
    def aligned(self, ids: list[str]) -> ItemStats:
        """The same statistics over another catalogue: rows follow ``ids``; unknown items have none."""
        if ids == self.ids:
            return self
        old = {x: r for r, x in enumerate(self.ids)}
        new_of_old = np.full(len(self.ids), -1, np.int64)
        for r, x in enumerate(ids):
            o = old.get(x)
            if o is not None:
                new_of_old[o] = r
        keep_ev = new_of_old[self.ev_row] >= 0
        n = len(ids)
        src = np.flatnonzero(new_of_old >= 0)
        sel = sp.csr_matrix((np.ones(len(src), np.float32), (src, new_of_old[src])), shape=(len(self.ids), n))
        cooc = (sel.T @ self.cooc @ sel).tocsr()

        def remap(x: np.ndarray, fill: float) -> np.ndarray:
            out = np.full(n, fill)
            out[new_of_old[src]] = x[src]
            return out

        return ItemStats(list(ids), self.ev_ts[keep_ev], new_of_old[self.ev_row[keep_ev]], remap(self.pop, 0.0),
                         remap(self.users, 0.0), remap(self.first_ts, np.inf), cooc, self.window, self.end_ts)

    def save(self, path: Path) -> None:
        np.savez_compressed(path / "stats.npz", ev_ts=self.ev_ts, ev_row=self.ev_row, pop=self.pop, users=self.users,
                            first_ts=self.first_ts, window=self.window, end_ts=self.end_ts)
        sp.save_npz(path / "cooc.npz", self.cooc)
        (path / "stats_ids.txt").write_text("\n".join(self.ids), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ItemStats:
        z = np.load(path / "stats.npz")
        ids = (path / "stats_ids.txt").read_text(encoding="utf-8").split("\n") if (path / "stats_ids.txt").stat(
        ).st_size else []
        return cls(ids, z["ev_ts"], z["ev_row"], z["pop"], z["users"], z["first_ts"],
                   sp.load_npz(path / "cooc.npz").tocsr(), int(z["window"]), float(z["end_ts"]))


def _dedup_consecutive(rows: np.ndarray) -> np.ndarray:
    if len(rows) < 2:
        return rows
    return rows[np.r_[True, rows[1:] != rows[:-1]]]
