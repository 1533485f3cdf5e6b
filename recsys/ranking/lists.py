"""What a shopper accepts in one list: few of their own items again, few variants of one product.

Ranking alone fills a heavy buyer's list with what they already bought (repeats are the easiest hits) and with the same
product in three colours. :func:`compose` walks the ranked order and skips what would break a cap, then tops up from
the skipped items only when nothing else is left (a short list is worse than a repeat). Items the user already has
belong in their own list ("buy again": the same ranker restricted to them, with no caps).
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


def compose(order: Sequence[int], k: int, repeat: np.ndarray, group: np.ndarray | None,
            policy: ListPolicy, shown: int | None = None) -> list[int]:
    """The first k of ``order`` (candidate indices) that keep within ``policy``.

    Per candidate index: ``repeat`` is True for an item already in the user's history, ``group`` its variant group
    (-1: none). ``shown``: the length of the list the user will see when k items are fetched to be thinned by
    later rules (bury): the repeat share is of those places, so whatever is removed, the list shown keeps the cap.
    """
    if not policy.active:
        return list(order[:k])
    max_rep = int(np.floor(policy.max_repeat_share * min(k, shown or k) + 1e-9))
    reps = 0
    per_group: dict[int, int] = {}
    chosen: list[int] = []
    skipped: list[int] = []
    for i in order:
        if len(chosen) == k:
            break
        g = int(group[i]) if group is not None else -1
        is_repeat = bool(repeat[i])
        if (is_repeat and reps >= max_rep) or (policy.max_per_group > 0 and g >= 0
                                               and per_group.get(g, 0) >= policy.max_per_group):
            skipped.append(int(i))
            continue
        chosen.append(int(i))
        reps += is_repeat
        if g >= 0:
            per_group[g] = per_group.get(g, 0) + 1
    if len(chosen) < k:  # too few candidates within the caps: the best of the rest, in ranked order
        chosen.extend(skipped[: k - len(chosen)])
    return chosen
