"""When an explanation's look-alike is shown as the reason, and what a candidate source means in words: one place for
the explorer's cards and the CLI's ``recommend --explain`` table, so the two never disagree about a reason."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MIN_BECAUSE = 0.3
"""A look-alike shown as the reason only from this fused cosine on: "like an item you viewed" beside a 0.09 is no
reason (such an item came from another source, which its tags show)."""

SOURCE_REASONS: Mapping[str, str] = {
    "repurchase": "one of your own items, to buy again",
    "seen": "an item you have seen before (not bought)",
    "variant": "another version of an item you had (e.g. another colour)",
    "cobuy": "bought with or instead of your latest items",
    "cooc": "other shoppers with your items had it too",
    "interest": "near the mix of items in your history",
    "content": "among the nearest neighbours of one of your latest items",
    "similar": "among the items described most like your latest ones",
    "hybrid": "among the items sharing name words with your latest ones",
    "new": "new in the catalogue, near your taste",
    "trending": "trending now",
    "popular": "popular with everyone",
    "exploration": "a new or little-seen item, mixed in to explore",
    "pinned": "pinned at this place by a list rule",
}
"""Each candidate source (``recsys.ranking.candidates.SOURCES`` and the list rules' own) in words, in the order
:func:`source_reason` names them: what shoppers did before what resembles, since the sources are named exactly when
no history item is a close look-alike (a resemblance claim is then the weakest reason)."""


def shows_look_alike(explanation: Mapping[str, Any]) -> bool:
    """Whether the explanation's ``because_of`` item is a reason worth showing: a repeat, or a close look-alike."""
    if not explanation.get("because_of"):
        return False
    return explanation.get("reason") == "repeat" or float(explanation.get("similarity") or 0.0) >= MIN_BECAUSE


def source_reason(sources: Iterable[str], most: int = 2) -> str:
    """The ``most`` most personal of ``sources`` in words ("other shoppers with your items had it too; trending
    now"); an unknown source by its name."""
    given = list(dict.fromkeys(sources))
    known = [SOURCE_REASONS[s] for s in SOURCE_REASONS if s in given]
    return "; ".join((known + [s for s in given if s not in SOURCE_REASONS])[:most]) or "no source recorded"
