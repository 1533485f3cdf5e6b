"""A user's history as arrays over catalogue rows, and the conversion from event frames.

Times are float days since the Unix epoch everywhere inside the ranker: cheap to subtract, good enough to the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from recsys.ranking.catalog import ItemTable
from recsys.store.tables import HISTORY_TYPES

TYPE_CODE = {t: i for i, t in enumerate(HISTORY_TYPES)}
"""Event type -> the code the model's type embeddings use (the store's order: stable across artifacts)."""
DISLIKE = TYPE_CODE["dislike"]
PURCHASE = TYPE_CODE["purchase"]
DAY_S = 86_400.0


def to_days(ts: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Timestamps (naive = UTC) as float days since the epoch."""
    t = pd.to_datetime(pd.Series(np.asarray(ts)))
    if getattr(t.dt, "tz", None) is not None:
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
    return t.to_numpy(dtype="datetime64[ns]").astype(np.int64) / (DAY_S * 1e9)


def day_of(now: datetime | pd.Timestamp | float | None) -> float | None:
    if now is None:
        return None
    if isinstance(now, float | int):
        return float(now)
    ts = pd.Timestamp(now)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return float(ts.value / (DAY_S * 1e9))


@dataclass
class History:
    """One user's positive events, oldest first, plus the rows they disliked.

    ``rows``: catalogue rows (int64); ``types``: event type codes; ``values``: float (NaN when absent);
    ``ts``: days since epoch. Events on items missing from the catalogue are dropped.
    """

    rows: np.ndarray
    types: np.ndarray
    values: np.ndarray
    ts: np.ndarray
    disliked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    disliked_ts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """When each row of ``disliked`` was first disliked (days)."""
    uncounted_from: float = np.inf
    """Events at or after this time are not in the ranker's statistics (a shopper who arrived after training):
    :func:`recsys.ranking.context.make_context` adds them, as training counted each shopper's own earlier events."""
    pairs_uncounted_from: float | None = None
    """The same for the statistics' co-occurrence pairs when it differs (a live recount keeps the training's
    pairs: :meth:`recsys.ranking.stats.ItemStats.uncounted`); None: ``uncounted_from``."""

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def empty(cls) -> History:
        z = np.zeros(0)
        return cls(z.astype(np.int64), z.astype(np.int64), z, z)

    def prefix(self, end: int) -> History:
        """The first ``end`` events, and the dislikes made before the time of event ``end`` (none of the future)."""
        cut = self.ts[end] if end < len(self.ts) else np.inf
        keep = self.disliked_ts < cut
        return History(self.rows[:end], self.types[:end], self.values[:end], self.ts[:end], self.disliked[keep],
                       self.disliked_ts[keep], self.uncounted_from, self.pairs_uncounted_from)

    def latest(self, n: int) -> History:
        """The latest ``n`` positive events (``max_events``), every dislike of this history kept (a request's read
        already stopped at its latest ``max_events`` events of any kind, dislikes among them); itself when it holds
        no more."""
        if len(self.rows) <= n:
            return self
        return replace(self, rows=self.rows[-n:], types=self.types[-n:], values=self.values[-n:], ts=self.ts[-n:])

    @property
    def pairs_from(self) -> float:
        """From when the statistics' co-occurrence pairs miss this history's events."""
        return self.uncounted_from if self.pairs_uncounted_from is None else self.pairs_uncounted_from

    @property
    def seeds(self) -> np.ndarray:
        """bool per event: it may seed candidates and explain a pick. A positive event on an item the shopper
        disliked does not: the dislike withdraws it, as it excludes the item for good (a later like does not
        undo it). The ranker's features still see every event (what training saw)."""
        if not len(self.disliked):
            return np.ones(len(self.rows), bool)
        return ~np.isin(self.rows, self.disliked)

    @property
    def bought(self) -> np.ndarray:
        """The rows of the shopper's purchase events."""
        return self.rows[self.types == PURCHASE]

    @property
    def last_ts(self) -> float | None:
        return float(self.ts[-1]) if len(self.ts) else None


def _frame_arrays(events: pd.DataFrame, table: ItemTable) -> pd.DataFrame:
    df = pd.DataFrame({
        "user_id": events["user_id"].astype(str).to_numpy() if "user_id" in events else "",
        "row": table.rows_of(events["item_id"]),
        "type": events["type"].map(TYPE_CODE).fillna(-1).astype(np.int64).to_numpy(),
        "value": pd.to_numeric(events["value"], errors="coerce").to_numpy(dtype=float)
        if "value" in events else np.nan,
        "ts": to_days(events["ts"]),
    })
    df = df[(df["row"] >= 0) & (df["type"] >= 0)]
    return df.sort_values(["user_id", "ts"], kind="stable")


def history_from_frame(events: pd.DataFrame, table: ItemTable) -> History:
    """One user's events (any order) as a :class:`History`. A later like/purchase does not undo a dislike."""
    if events is None or len(events) == 0:
        return History.empty()
    df = _frame_arrays(events, table).sort_values("ts", kind="stable")
    h = _history_of(df)
    # a frame says when the statistics stop counting its events (posted session events: never), as History does
    h.uncounted_from = float(events.attrs.get("uncounted_from", np.inf))
    return h


def _history_of(df: pd.DataFrame) -> History:
    neg = df["type"].to_numpy() == DISLIKE
    pos = df[~neg]
    return History(
        pos["row"].to_numpy(np.int64), pos["type"].to_numpy(np.int64), pos["value"].to_numpy(float),
        pos["ts"].to_numpy(float), *_first_dislikes(df.loc[neg, "row"].to_numpy(np.int64),
                                                    df.loc[neg, "ts"].to_numpy(float)),
    )


def _first_dislikes(rows: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct disliked rows and the time of each one's first dislike (input sorted by time)."""
    uniq, first = np.unique(rows, return_index=True)
    return uniq, ts[first].astype(float)


def history_from_records(records: Sequence[tuple[str, str, float | None, datetime]], table: ItemTable) -> History:
    """One user's events as (item_id, type, value, ts) tuples, oldest first, as a :class:`History`.

    The per-request path: the same result as :func:`history_from_frame` without building frames (pandas costs more
    than the whole ranking step for a short history). Naive timestamps are UTC.
    """
    if not records:
        return History.empty()
    n = len(records)
    rows = table.rows_of([r[0] for r in records])
    types = np.fromiter((TYPE_CODE.get(r[1], -1) for r in records), np.int64, count=n)
    values = np.fromiter((np.nan if r[2] is None else r[2] for r in records), float, count=n)
    ts = np.fromiter((_days(r[3]) for r in records), float, count=n)
    keep = (rows >= 0) & (types >= 0)
    rows, types, values, ts = rows[keep], types[keep], values[keep], ts[keep]
    order = np.argsort(ts, kind="stable")
    rows, types, values, ts = rows[order], types[order], values[order], ts[order]
    neg = types == DISLIKE
    return History(rows[~neg], types[~neg], values[~neg], ts[~neg], *_first_dislikes(rows[neg], ts[neg]))


def _days(ts: datetime) -> float:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return (ts - _EPOCH).total_seconds() / DAY_S


_EPOCH = datetime(1970, 1, 1)


def histories_by_user(events: pd.DataFrame, table: ItemTable) -> dict[str, History]:
    """All users' histories from an events frame."""
    if len(events) == 0:
        return {}
    df = _frame_arrays(events, table)
    return {str(u): _history_of(g) for u, g in df.groupby("user_id", sort=False)}


def recency_weights(ts: np.ndarray, now: float, half_life: float) -> np.ndarray:
    """Exponential decay weights of events at times ``ts`` (days) seen at ``now``."""
    return np.power(0.5, np.clip(now - ts, 0, None) / max(half_life, 1e-6))
