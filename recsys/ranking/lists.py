"""What a shopper accepts in one list: few of their own items again, few variants of one product.

Ranking alone fills a heavy buyer's list with what they already bought (repeats are the easiest hits) and with the same
product in three colours. :func:`compose` walks the ranked order and skips what would break a cap, then tops up from
the skipped items only when nothing else is left (a short list is worse than a repeat). Items the user already has
belong in their own list: :func:`own_items` ranks them for "buy again".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ListPolicy:
    max_repeat_share: float = 1.0
    """Share of the k slots that may hold items already in the user's history (1: no cap)."""
    max_per_group: int = 0
    """Items of one group (e.g. one H&M product code in several colours) per list (0: no cap)."""

    @property
    def active(self) -> bool:
        return self.max_repeat_share < 1.0 or self.max_per_group > 0


def compose(order: Sequence[int], rows: np.ndarray, k: int, owned: np.ndarray, group: np.ndarray | None,
            policy: ListPolicy) -> list[int]:
    """The first k indices of ``order`` (indices into ``rows``) that keep within ``policy``.

    ``owned`` is a bool per catalogue row (in the user's history); ``group`` an int per catalogue row (-1: none).
    """
    if not policy.active:
        return list(order[:k])
    max_rep = int(np.floor(policy.max_repeat_share * k + 1e-9))
    reps = 0
    per_group: dict[int, int] = {}
    chosen: list[int] = []
    skipped: list[int] = []
    for i in order:
        if len(chosen) == k:
            break
        row = int(rows[i])
        g = int(group[row]) if group is not None else -1
        repeat = bool(owned[row])
        if (repeat and reps >= max_rep) or (policy.max_per_group > 0 and g >= 0
                                            and per_group.get(g, 0) >= policy.max_per_group):
            skipped.append(int(i))
            continue
        chosen.append(int(i))
        reps += repeat
        if g >= 0:
            per_group[g] = per_group.get(g, 0) + 1
    if len(chosen) < k:  # too few candidates within the caps: the best of the rest, in ranked order
        chosen.extend(skipped[: k - len(chosen)])
    return chosen


def own_items(history_rows: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Distinct rows of the user's history that may be shown again, latest first."""
    rev = np.asarray(history_rows)[::-1]
    _, first = np.unique(rev, return_index=True)
    latest = rev[np.sort(first)]
    return latest[available[latest]] if len(latest) else latest
