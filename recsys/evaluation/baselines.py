"""The reference recommenders of DESIGN.md section 4 (``BASELINES``), fitted on a split's training events only.

Each is a callable ``(user_id, history, k) -> list[str]`` like every recommender the evaluator runs:

Every statistic is counted as of the user's request time (the split's target time): no baseline sees the targets or
anything after them, exactly like ours (DESIGN.md section 4).

- :class:`Popular`: items by positive events in the last 30 days before the request time (a unit bought twice counts
  twice), then by distinct users over all time before it.
- :class:`ItemCooccurrence`: item-item cosine over the training user-item matrix before the request time (binary),
  ``sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|)``; a user's score for j sums sim(h, j) over their distinct history
  items. Lists are topped up with :class:`Popular` when fewer than k items score above zero.
- :class:`ContentKNN`: max cosine similarity of each catalogue item to the user's last 10 distinct history items,
  from item vectors (n, d) float32 given by the caller; works for items nobody has interacted with.

``exclude_seen`` drops the user's history items from the list (right for MovieLens, where nobody rates a movie
twice; H&M customers do buy again, see :func:`make_baselines`). Negative events (dislikes) are not interactions:
no baseline queries with them, and none ever returns an item the user disliked (ours hard-excludes them too).

Every baseline recommends from the same catalogue as ours (``catalogue``: the indexed items; None: every item it
knows) less the same exclusions (``exclude``: hidden or deleted items), DESIGN.md section 4: an item that cannot be
served is never a slot a baseline spends.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import ValidationFailed
from recsys.evaluation.splits import NEGATIVE_TYPES, Split, positives


def _top(scores: np.ndarray, k: int, banned: np.ndarray | None = None, tie: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest finite scores, best first; ties by the higher ``tie``, then the lower index
    (whichever of several tied items sit at the k-th place: a partition alone would pick among them at random)."""
    s = scores.astype(np.float64, copy=True)
    if banned is not None and len(banned):
        s[banned] = -np.inf
    ok = np.flatnonzero(np.isfinite(s))
    k = min(k, len(ok))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    keys = (ok, -s[ok]) if tie is None else (ok, -tie[ok].astype(np.float64), -s[ok])
    return ok[np.lexsort(keys)[:k]]


def _servable(items: np.ndarray, catalogue: Collection[str] | None, exclude: Collection[str]) -> np.ndarray:
    """Which of ``items`` a baseline may recommend: in ``catalogue`` (None: all) and not in ``exclude``, shape (n,)."""
    ok = np.ones(len(items), bool) if catalogue is None else np.isin(items.astype(str), list(map(str, catalogue)))
    if exclude:
        ok &= ~np.isin(items.astype(str), list(map(str, exclude)))
    return ok


def _query_items(history: pd.DataFrame) -> list[str]:
    """The history's positive items, oldest first: what a baseline asks with (a dislike is no interest)."""
    pos = positives(history)
    return pos["item_id"].astype(str).tolist() if len(pos) else []


def _disliked(history: pd.DataFrame) -> set[str]:
    """Items the user disliked before the request: never recommended, as ours never recommends them."""
    if not len(history):
        return set()
    return set(history.loc[history["type"].isin(NEGATIVE_TYPES), "item_id"].astype(str))


class _Timeline:
    """Training interactions for counting as of a time: each (user, item)'s first positive event, sorted by time.

    Events of one time (a day, in H&M) are put in (user, item) order first: rows, and so every tie between items,
    then follow the events themselves, not the order a store returned them in (a co-occurrence baseline moved by
    0.006 recall on one H&M part with that order alone)."""

    def __init__(self, train: pd.DataFrame) -> None:
        pos = positives(train)
        if len(pos):
            pos = pos.assign(user_id=pos["user_id"].astype(str), item_id=pos["item_id"].astype(str))
            pos = pos.sort_values(["ts", "user_id", "item_id"], kind="stable")
        first = pos.groupby(["user_id", "item_id"], sort=False)["ts"].min().reset_index() if len(pos) else \
            pd.DataFrame({"user_id": [], "item_id": [], "ts": pd.to_datetime([])})
        first = first.sort_values("ts", kind="stable")
        ucode, _ = pd.factorize(first["user_id"].astype(str))
        icode, items = pd.factorize(first["item_id"].astype(str))
        self.items = np.asarray(items, dtype=object)
        self.row = {str(i): r for r, i in enumerate(self.items)}
        self.user = ucode.astype(np.int64)
        self.item = icode.astype(np.int64)
        self.ts = first["ts"].to_numpy(dtype="datetime64[ns]")
        self.n_users = int(ucode.max(initial=-1)) + 1
        ev = pos.sort_values("ts", kind="stable")
        self.ev_item = np.array([self.row.get(str(i), -1) for i in ev["item_id"]], dtype=np.int64)
        self.ev_ts = ev["ts"].to_numpy(dtype="datetime64[ns]")

    def before(self, now: pd.Timestamp | None) -> int:
        """How many (user, item) pairs were first seen strictly before ``now`` (all of them for None)."""
        return len(self.ts) if now is None else int(np.searchsorted(self.ts, np.datetime64(now, "ns"), "left"))

    def last(self, now: pd.Timestamp | None) -> np.ndarray:
        """Time of each item's latest event before ``now`` (int64 ns; the minimum where none)."""
        hi = len(self.ev_ts) if now is None else int(np.searchsorted(self.ev_ts, np.datetime64(now, "ns"), "left"))
        out = np.full(len(self.items), np.iinfo(np.int64).min, np.int64)
        np.maximum.at(out, self.ev_item[:hi], self.ev_ts[:hi].astype(np.int64))
        return out

    def counts(self, now: pd.Timestamp | None, days: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(users, events) per item in [now - days, now) (``days`` None: everything before now). ``users`` counts
        distinct users over everything before now; within a window it is the events again (two units one shopper
        bought count twice there): the count :class:`Popular` ranks its window by, as its figures were measured."""
        n = len(self.items)
        hi = len(self.ev_ts) if now is None else int(np.searchsorted(self.ev_ts, np.datetime64(now, "ns"), "left"))
        lo = 0
        if days is not None and now is not None:
            lo = int(np.searchsorted(self.ev_ts, np.datetime64(now - pd.Timedelta(days=days), "ns"), "left"))
        events = np.bincount(self.ev_item[lo:hi], minlength=n).astype(np.float64)
        users = np.bincount(self.item[: self.before(now)], minlength=n).astype(np.float64) if days is None else events
        return users, events


def _now_of(now: Mapping[str, pd.Timestamp] | None, user_id: str) -> pd.Timestamp | None:
    """The request time of a test user (the split's target time); None (no time limit) for a user without one."""
    return pd.Timestamp(now[user_id]) if now is not None and user_id in now else None


class Popular:
    """Most popular items as of the request time: by positive events in the last ``window_days`` before it (not
    distinct users: one shopper's five units outrank three shoppers' one each), then by distinct users over
    everything before it, then by events, then by the latest sale. The same list for everyone at one time."""

    name = "popular"

    def __init__(self, train: pd.DataFrame, *, exclude_seen: bool = False, window_days: float | None = 30.0,
                 now: Mapping[str, pd.Timestamp] | None = None, catalogue: Collection[str] | None = None,
                 exclude: Collection[str] = ()) -> None:
        self.exclude_seen = exclude_seen
        self.window_days = window_days
        self.now = now
        self._t = _Timeline(train)
        self.servable = _servable(self._t.items, catalogue, exclude)

    def ranking_at(self, now: pd.Timestamp | None) -> list[str]:
        users, events = self._t.counts(now)
        last = self._t.last(now)
        key = [-last.astype(np.float64), -events, -users]  # ties: more events, then the more recent
        if self.window_days is not None and now is not None:
            _, w_events = self._t.counts(now, self.window_days)
            key = [*key, -w_events]
        order = np.lexsort(tuple(key))  # last key is the primary one
        order = order[(users[order] > 0) & self.servable[order]]
        return [str(self._t.items[i]) for i in order]

    @property
    def ranking(self) -> list[str]:
        """The ranking over all training events (no time limit)."""
        return self.ranking_at(None)

    def __call__(self, user_id: str, history: pd.DataFrame, k: int) -> list[str]:
        seen = (set(_query_items(history)) if self.exclude_seen else set()) | _disliked(history)
        out: list[str] = []
        for item in self.ranking_at(_now_of(self.now, user_id)):
            if item not in seen:
                out.append(item)
                if len(out) == k:
                    break
        return out


class ItemCooccurrence:
    """Item-item cosine co-occurrence over the training interactions known before the request time (equal scores:
    the item sold last first), topped up with :class:`Popular` items of that time."""

    name = "item_cooccurrence"

    def __init__(self, train: pd.DataFrame, *, exclude_seen: bool = False, fallback: Popular | None = None,
                 now: Mapping[str, pd.Timestamp] | None = None, catalogue: Collection[str] | None = None,
                 exclude: Collection[str] = ()) -> None:
        self._t = _Timeline(train)
        self.items = self._t.items
        self._row = self._t.row
        self.exclude_seen = exclude_seen
        self.now = now
        self._unservable = np.flatnonzero(~_servable(self.items, catalogue, exclude))
        self.fallback = fallback or Popular(train, now=now, catalogue=catalogue, exclude=exclude)
        self._x: tuple[int, sp.csc_matrix, np.ndarray] | None = None

    def _matrix(self, now: pd.Timestamp | None) -> tuple[sp.csc_matrix, np.ndarray]:
        """The user x item matrix of pairs before ``now`` (cached for the last cut) and each item's user count."""
        cut = self._t.before(now)
        if self._x is None or self._x[0] != cut:
            x = sp.csc_matrix((np.ones(cut, np.float32), (self._t.user[:cut], self._t.item[:cut])),
                              shape=(max(self._t.n_users, 1), len(self.items)))
            self._x = (cut, x, np.asarray(x.sum(axis=0), dtype=np.float64).ravel())
        return self._x[1], self._x[2]

    def scores(self, history: pd.DataFrame, now: pd.Timestamp | None = None) -> np.ndarray:
        """Summed cosine similarity of every item to the history's distinct positive items, as of ``now``, shape
        (n_items,)."""
        rows = sorted({self._row[i] for i in _query_items(history) if i in self._row})
        if not rows:
            return np.zeros(len(self.items), np.float64)
        x, deg = self._matrix(now)
        co = np.asarray((x.T @ x[:, rows]).todense(), dtype=np.float64)  # (n_items, |rows|)
        co[rows, np.arange(len(rows))] = 0.0
        norm = np.sqrt(np.maximum(deg, 1.0))
        co = co / norm[:, None] / norm[rows][None, :]
        return co.sum(axis=1)

    def __call__(self, user_id: str, history: pd.DataFrame, k: int) -> list[str]:
        now = _now_of(self.now, user_id)
        s = self.scores(history, now)
        s[s <= 0] = -np.inf
        skip = (set(_query_items(history)) if self.exclude_seen else set()) | _disliked(history)
        banned = np.r_[self._unservable, np.array([self._row[i] for i in skip if i in self._row], dtype=np.int64)]
        out = [str(self.items[j]) for j in _top(s, k, banned, tie=self._t.last(now))]  # ties: the latest sold
        if len(out) < k:
            skip |= set(out)
            for item in self.fallback.ranking_at(now):
                if item not in skip:
                    out.append(item)
                    skip.add(item)
                    if len(out) == k:
                        break
        return out


class ContentKNN:
    """Max cosine similarity to the last ``last_n`` distinct history items, over item vectors."""

    name = "content_knn"

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, *, last_n: int = 10,
                 exclude_seen: bool = True, fallback: Popular | None = None, exclude: Collection[str] = ()) -> None:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[0] != len(item_ids):
            raise ValidationFailed(f"content kNN needs vectors of shape (n_items, d) = ({len(item_ids)}, d), "
                                   f"got {v.shape}")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.vectors = v / np.where(norms > 0, norms, 1.0)
        self.items = np.asarray([str(i) for i in item_ids], dtype=object)
        self._row = {i: r for r, i in enumerate(self.items)}
        self.last_n = last_n
        self.exclude_seen = exclude_seen
        self.fallback = fallback
        """Answers a shopper with no known history item (as co-occurrence does): nothing to be similar to."""
        self._unservable = np.flatnonzero(~_servable(self.items, None, exclude))

    def __call__(self, user_id: str, history: pd.DataFrame, k: int) -> list[str]:
        known = [self._row[i] for i in _query_items(history) if i in self._row]
        recent = list(dict.fromkeys(reversed(known)))[: self.last_n]
        if not recent:
            return self.fallback(user_id, history, k) if self.fallback is not None else []
        s = (self.vectors[recent] @ self.vectors.T).max(axis=0)
        banned = {self._row[i] for i in _disliked(history) if i in self._row}
        if self.exclude_seen:
            banned |= set(known)
        return [str(self.items[j]) for j in _top(s, k, np.r_[self._unservable, sorted(banned)].astype(np.int64))]


def make_baselines(split: Split, item_ids: Sequence[str] | None = None, vectors: np.ndarray | None = None, *,
                   exclude_seen: bool | None = None, content_vectors: np.ndarray | None = None,
                   exclude: Collection[str] = ()) -> dict[str, Popular | ItemCooccurrence | ContentKNN]:
    """The baselines fitted on ``split.train``, each answering as of the split's target times.

    ``item_ids`` is the recommendable catalogue (the index's items: what ours ranks) and ``exclude`` the items ours
    may not return (hidden, deleted): no baseline recommends an item outside the one or inside the other, although
    their events still count (a deleted item's buyers still co-bought what they bought). None: every item trained on.

    ``exclude_seen`` defaults to True for ``last_interaction`` (MovieLens: no re-ratings) and False for ``last_day``
    (repurchases are real targets; a baseline blind to them would be a straw man). Content kNN (over ``vectors``)
    leaves the history items out unless ``exclude_seen=False`` is passed: its answer is their neighbours.
    ``content_vectors`` (e.g. the raw text tower's vectors) add ``content_peer``: the bar a user tries first, max
    similarity to the last 10 items with the user's own items allowed (unless ``exclude_seen``).
    """
    ex = split.protocol == "last_interaction" if exclude_seen is None else exclude_seen
    now = split.target_time
    pop = Popular(split.train, exclude_seen=ex, now=now, catalogue=item_ids, exclude=exclude)
    out: dict[str, Popular | ItemCooccurrence | ContentKNN] = {
        "popular": pop,
        "item_cooccurrence": ItemCooccurrence(split.train, exclude_seen=ex, fallback=pop, now=now,
                                              catalogue=item_ids, exclude=exclude),
    }
    if vectors is not None and item_ids is not None:
        out["content_knn"] = ContentKNN(item_ids, vectors, exclude_seen=True if exclude_seen is None else ex,
                                          fallback=pop, exclude=exclude)
    if content_vectors is not None and item_ids is not None:
        out["content_peer"] = ContentKNN(item_ids, content_vectors, exclude_seen=ex, fallback=pop, exclude=exclude)
    return out
