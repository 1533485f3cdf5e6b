"""Interaction statistics of the events: popularity, distinct users, first sale, trending windows, co-occurrence and
the prices paid.

Every query takes the time ``now`` (float days) and counts only events strictly before it (DESIGN.md section 4): a
training anchor, an evaluated user and a backtest see the catalogue as it was then, never its future (the anchor's own
later purchases, other shoppers' later purchases, or the targets). At or after the last event the precomputed
all-time totals answer, which is the serving case.

Everything is kept by item id so the statistics survive catalogue updates (:meth:`ItemStats.aligned`): a new item
simply has no interactions yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.ranking.history import TYPE_CODE, History

PURCHASE = TYPE_CODE["purchase"]
BULK_EVENTS = 100
"""How many events near the wall clock make a historical store live (:meth:`ItemStats.data_end`)."""


def sequence_pairs(rows: np.ndarray, window: int, ts: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordered pairs (i, j), i != j, of items at most ``window`` positions apart in one sequence (both directions),
    with the time each pair became known (the later event's time; zeros without ``ts``)."""
    n = len(rows)
    t = ts if ts is not None else np.zeros(n)
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    c: list[np.ndarray] = []
    for off in range(1, min(window, n - 1) + 1):
        a.append(rows[:-off])
        b.append(rows[off:])
        c.append(t[off:])
    if not a:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0)
    i, j, pt = np.concatenate(a), np.concatenate(b), np.concatenate(c)
    keep = i != j
    i, j, pt = i[keep], j[keep], pt[keep]
    return np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([pt, pt])


@dataclass
class ItemStats:
    """Statistics over the rows of the catalogue they were aligned to (``ids``)."""

    ids: list[str]
    ev_ts: np.ndarray
    """Positive event times (days), sorted."""
    ev_row: np.ndarray
    """Item row of each event in ``ev_ts``."""
    pair_ts: np.ndarray
    """First time of each distinct (user, item) pair, sorted (for distinct users as of a time)."""
    pair_row: np.ndarray
    cooc_row: np.ndarray
    """Co-occurrence pairs (row -> col) within ``window`` positions of a user's sequence, sorted by row, with the
    time each pair became known (``cooc_ts``); ``cooc_ptr`` indexes the first pair of each row (CSR layout)."""
    cooc_col: np.ndarray
    cooc_ts: np.ndarray
    cooc_ptr: np.ndarray
    window: int
    end_ts: float
    """Time of the last event."""
    counted_users: frozenset[str] | None = None
    """The users whose events (up to ``end_ts``) these statistics count; None when not recorded (older artifacts)."""
    ev_price: np.ndarray | None = None
    """Price paid at each event of ``ev_ts`` (a purchase's value; NaN otherwise); None in older artifacts."""
    pairs_users: frozenset[str] | None = None
    """Whose co-occurrence pairs (up to ``pairs_end_ts``) the ``cooc_*`` arrays count when that differs from the
    rest: a live recount keeps the training's pairs (:meth:`with_pairs_of`). None: the same as ``counted_users``."""
    pairs_end_ts: float | None = None
    counted_through: int | None = None
    """The newest stored event id these statistics count (the training's events watermark, or a live recount's);
    None when not known. Event ids are never reused, so a user whose every stored event is newer was not counted by
    them, whatever ``counted_users`` says: a deleted user who came back (:meth:`uncounted`)."""
    pairs_counted_through: int | None = None
    """The same for the co-occurrence pairs when they are another count's (:meth:`with_pairs_of`)."""

    @classmethod
    def fit(cls, ids: list[str], histories: dict[str, History], window: int = 20) -> ItemStats:
        n = len(ids)
        ts_parts, row_parts, pts, prow, ci, cj, ct, price_parts = [], [], [], [], [], [], [], []
        for h in histories.values():
            if not len(h):
                continue
            ts_parts.append(h.ts)
            row_parts.append(h.rows)
            price_parts.append(paid(h))
            u_rows, first = np.unique(h.rows, return_index=True)  # histories are time-sorted
            prow.append(u_rows)
            pts.append(h.ts[first])
            keep = first_of_runs(h.rows)
            i, j, t = sequence_pairs(h.rows[keep], window, h.ts[keep])
            ci.append(i)
            cj.append(j)
            ct.append(t)

        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        ev_ts, ev_row = cat(ts_parts, np.float64), cat(row_parts, np.int64)
        o = np.argsort(ev_ts, kind="stable")
        pair_ts, pair_row = cat(pts, np.float64), cat(prow, np.int64)
        po = np.argsort(pair_ts, kind="stable")
        end = float(ev_ts[o][-1]) if len(ev_ts) else 0.0
        return cls.from_pairs(list(ids), ev_ts[o], ev_row[o], pair_ts[po], pair_row[po], cat(ci, np.int64),
                              cat(cj, np.int64), cat(ct, np.float64), window, end, n,
                              frozenset(map(str, histories)), cat(price_parts, np.float64)[o])

    @classmethod
    def from_pairs(cls, ids: list[str], ev_ts: np.ndarray, ev_row: np.ndarray, pair_ts: np.ndarray,
                   pair_row: np.ndarray, ci: np.ndarray, cj: np.ndarray, ct: np.ndarray, window: int, end: float,
                   n: int, counted: frozenset[str] | None = None, price: np.ndarray | None = None,
                   pairs_users: frozenset[str] | None = None, pairs_end: float | None = None,
                   through: tuple[int | None, int | None] = (None, None)) -> ItemStats:
        o = np.lexsort((ct, ci))
        ptr = np.searchsorted(ci[o], np.arange(n + 1), side="left")
        return cls(ids, ev_ts, ev_row, pair_ts, pair_row, ci[o], cj[o], ct[o], ptr, window, end, counted, price,
                   pairs_users, pairs_end, *through)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.pop = np.bincount(self.ev_row, minlength=n).astype(np.float64)
        """Positive events per item, all time (float64)."""
        self.users = np.bincount(self.pair_row, minlength=n).astype(np.float64)
        """Distinct users per item, all time."""
        self.first_ts = np.full(n, np.inf)
        """First positive event per item, +inf when none."""
        np.minimum.at(self.first_ts, self.ev_row, self.ev_ts)
        self._cooc = sp.csr_matrix((np.ones(len(self.cooc_col), np.float32), self.cooc_col, self.cooc_ptr),
                                   shape=(n, n))
        self._cooc.sum_duplicates()
        self._windows: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        self._prices: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        self._upto: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}

    # -- queries as of a time ---------------------------------------------------------------------------------
    def _current(self, now: float) -> bool:
        return now > self.end_ts

    def data_end(self, stale_days: float) -> float:
        """When the bulk of the events ends: the newest event within ``stale_days`` after the
        :data:`BULK_EVENTS`-th newest (at most 1% of them). The data clock and ``auto`` start from it, so a few
        events far ahead of the rest (a like from the explorer, stamped today, in a historical store such as the
        demo or H&M) do not move every shopper's clock by months; once that many live events are stored, they
        are the bulk."""
        ts = self.ev_ts
        if not len(ts):
            return self.end_ts
        k = max(1, min(BULK_EVENTS, len(ts) // 100))
        last = int(np.searchsorted(ts, ts[-k] + stale_days, side="right")) - 1
        return float(ts[last])

    def pop_at(self, now: float) -> np.ndarray:
        """Positive events per item before ``now``."""
        if self._current(now):
            return self.pop
        hi = int(np.searchsorted(self.ev_ts, now, side="left"))
        # kept: a data clock before a few live events far ahead asks for the same cut request after request
        return _memo(self._upto, (0, hi),
                     lambda: (np.bincount(self.ev_row[:hi], minlength=len(self.ids)).astype(np.float64),))[0]

    def users_at(self, now: float) -> np.ndarray:
        """Distinct users per item before ``now``."""
        if self._current(now):
            return self.users
        hi = int(np.searchsorted(self.pair_ts, now, side="left"))
        return _memo(self._upto, (1, hi),
                     lambda: (np.bincount(self.pair_row[:hi], minlength=len(self.ids)).astype(np.float64),))[0]

    def window_counts(self, now: float, days: float) -> np.ndarray:
        """Positive events per item in [now - days, now) (read-only: requests of the same moment share it)."""
        hi = int(np.searchsorted(self.ev_ts, now, side="left"))
        lo = int(np.searchsorted(self.ev_ts, now - days, side="left"))
        return _memo(self._windows, (lo, hi),
                     lambda: (np.bincount(self.ev_row[lo:hi], minlength=len(self.ids)).astype(np.float64),))[0]

    def price_sums_at(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Per item, the sum and the number of the prices paid before ``now`` (their mean is the item's price as of
        then: a statistic of the events, never an item field; all zero when no event carries a price)."""
        hi = len(self.ev_ts) if self._current(now) else int(np.searchsorted(self.ev_ts, now, side="left"))
        n = len(self.ids)

        def count() -> tuple[np.ndarray, ...]:
            v = self.ev_price[:hi] if self.ev_price is not None else np.zeros(0)
            ok = np.isfinite(v)
            rows = self.ev_row[:hi][ok]
            return np.bincount(rows, weights=v[ok], minlength=n), np.bincount(rows, minlength=n).astype(np.float64)

        total, paid_n = _memo(self._prices, (0, hi), count)
        return total, paid_n

    def cooc_scores(self, query: np.ndarray, weights: np.ndarray, now: float) -> np.ndarray:
        """Sum over query rows of weight * co-occurrence counted from pairs known before ``now``, shape (n,)."""
        n = len(self.ids)
        if len(query) == 0:
            return np.zeros(n)
        if self._current(now):  # the query rows of the summed pair matrix, gathered flat (no sparse product)
            m = self._cooc
            starts, lens = m.indptr[query], m.indptr[query + 1] - m.indptr[query]
            at = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(int(lens.sum()))
            vals = m.data[at] * np.repeat(weights.astype(np.float32), lens)
            return np.bincount(m.indices[at], weights=vals, minlength=n)
        out = np.zeros(n)
        for q, wq in zip(query.tolist(), weights.tolist(), strict=True):
            a, b = self.cooc_ptr[q], self.cooc_ptr[q + 1]
            # pairs of a row are sorted by time: the ones known before now are a prefix
            cut = a + int(np.searchsorted(self.cooc_ts[a:b], now, side="left"))
            np.add.at(out, self.cooc_col[a:cut], wq)
        return out

    def uncounted_from(self, user_id: str, first_event_id: int | None = None) -> float:
        """From when ``user_id``'s events are missing from these statistics: all of them for a user they never
        counted (a shopper who arrived after training, or one deleted since who came back: the oldest of their
        stored events, ``first_event_id``, is newer than ``counted_through``), those after ``end_ts`` for one they
        did; +inf when the counted users are not recorded."""
        return _uncounted_from(self.counted_users, self.end_ts, user_id, first_event_id, self.counted_through)

    def uncounted(self, user_id: str, first_event_id: int | None = None) -> tuple[float, float]:
        """:meth:`uncounted_from` for the counts and for the co-occurrence pairs (they differ after a live recount
        that kept the training's pairs)."""
        events = self.uncounted_from(user_id, first_event_id)
        if self.pairs_users is None or self.pairs_end_ts is None:
            return events, events
        through = self.counted_through if self.pairs_counted_through is None else self.pairs_counted_through
        return events, _uncounted_from(self.pairs_users, self.pairs_end_ts, user_id, first_event_id, through)

    def with_pairs_of(self, other: ItemStats) -> ItemStats:
        """These counts with ``other``'s co-occurrence pairs (same rows and window): a live recount that keeps the
        pairs the ranker was trained with, whose scale it learned (a shopper's own pairs are added per request)."""
        if other.ids != self.ids or other.window != self.window:
            raise ValueError("co-occurrence pairs of statistics over other rows or another window")
        if other.counted_users is None and other.pairs_users is None:
            return self  # an older artifact: whose pairs it counts is unknown, so none could be added per request
        users = other.pairs_users if other.pairs_users is not None else other.counted_users
        end = other.pairs_end_ts if other.pairs_end_ts is not None else other.end_ts
        through = other.counted_through if other.pairs_users is None else other.pairs_counted_through
        return dataclasses.replace(self, cooc_row=other.cooc_row, cooc_col=other.cooc_col, cooc_ts=other.cooc_ts,
                                   cooc_ptr=other.cooc_ptr, pairs_users=users, pairs_end_ts=end,
                                   pairs_counted_through=through)

    # -- catalogue changes and persistence -------------------------------------------------------------------
    def aligned(self, ids: list[str]) -> ItemStats:
        """The same statistics over another catalogue: rows follow ``ids``; unknown items have none."""
        if ids == self.ids:
            return self
        old = {x: r for r, x in enumerate(self.ids)}
        new_of_old = np.full(len(self.ids) + 1, -1, np.int64)  # last slot: -1 for "no row"
        for r, x in enumerate(ids):
            o = old.get(x)
            if o is not None:
                new_of_old[o] = r
        ke = new_of_old[self.ev_row] >= 0
        kp = new_of_old[self.pair_row] >= 0
        ci, cj = new_of_old[self.cooc_row], new_of_old[self.cooc_col]
        kc = (ci >= 0) & (cj >= 0)
        return ItemStats.from_pairs(list(ids), self.ev_ts[ke], new_of_old[self.ev_row[ke]], self.pair_ts[kp],
                                    new_of_old[self.pair_row[kp]], ci[kc], cj[kc], self.cooc_ts[kc], self.window,
                                    self.end_ts, len(ids), self.counted_users,
                                    self.ev_price[ke] if self.ev_price is not None else None,
                                    self.pairs_users, self.pairs_end_ts,
                                    (self.counted_through, self.pairs_counted_through))

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"ev_ts": self.ev_ts, "ev_row": self.ev_row, "pair_ts": self.pair_ts,
                                  "pair_row": self.pair_row, "cooc_row": self.cooc_row, "cooc_col": self.cooc_col,
                                  "cooc_ts": self.cooc_ts, "cooc_ptr": self.cooc_ptr, "window": self.window,
                                  "end_ts": self.end_ts}
        if self.ev_price is not None:
            arrays["ev_price"] = self.ev_price
        np.savez_compressed(path / "stats.npz", **arrays)
        (path / "stats_ids.txt").write_text("\n".join(self.ids), encoding="utf-8")
        if self.counted_users is not None:
            (path / "stats_users.txt").write_text("\n".join(sorted(self.counted_users)), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ItemStats:
        z = np.load(path / "stats.npz")
        ids = (path / "stats_ids.txt").read_text(encoding="utf-8").split("\n") if (path / "stats_ids.txt").stat(
        ).st_size else []
        users = path / "stats_users.txt"
        counted = frozenset(users.read_text(encoding="utf-8").split("\n")) - {""} if users.exists() else None
        return cls(ids, z["ev_ts"], z["ev_row"], z["pair_ts"], z["pair_row"], z["cooc_row"], z["cooc_col"],
                   z["cooc_ts"], z["cooc_ptr"], int(z["window"]), float(z["end_ts"]), counted,
                   z["ev_price"] if "ev_price" in z.files else None, counted_through=_trained_through(path))


def _trained_through(path: Path) -> int | None:
    """The newest event id a saved ranker's training counted: the last id of the ``events_watermark`` ("count:last
    id") its manifest records (``recsys train``); None when it records none (older or hand-made artifacts)."""
    import json

    try:
        mark = json.loads((path / "manifest.json").read_text(encoding="utf-8")).get("events_watermark")
        return int(str(mark).rsplit(":", 1)[1])
    except (OSError, ValueError, IndexError, AttributeError):  # no manifest, no watermark, or "0:None"
        return None


def _uncounted_from(users: frozenset[str] | None, end_ts: float, user_id: str, first_event_id: int | None = None,
                    through: int | None = None) -> float:
    if users is None:
        return np.inf
    if first_event_id is not None and through is not None and first_event_id > through:
        return -np.inf  # every stored event of theirs came after the count: an id deleted since, come back
    return float(np.nextafter(end_ts, np.inf)) if str(user_id) in users else -np.inf


def _memo(cache: dict[tuple[int, int], tuple[np.ndarray, ...]], key: tuple[int, int],
          compute: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Arrays counted over one range of the events, kept read-only (requests of the same moment share them): serving
    asks for the same few ranges request after request, so each is counted once; at most 16 are kept."""
    hit = cache.get(key)
    if hit is None:
        hit = compute()
        for a in hit:
            a.flags.writeable = False
        if len(cache) >= 16:
            cache.clear()
        cache[key] = hit
    return hit


def paid(h: History) -> np.ndarray:
    """The price paid at each of the history's events: a purchase's value, NaN for other events."""
    return np.where(h.types == PURCHASE, h.values, np.nan).astype(np.float64)


def first_of_runs(rows: np.ndarray) -> np.ndarray:
    """Mask keeping the first of each run of consecutive equal rows."""
    return np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.zeros(0, bool)
