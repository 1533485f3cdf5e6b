"""When an explanation's look-alike is shown as the reason, and what a candidate source means in words: one place for
the explorer's cards and the CLI's ``recommend --explain`` table, so the two never disagree about a reason."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal

from recsys.ranking.explain import MIN_BECAUSE

__all__ = ["MIN_BECAUSE", "SOURCE_REASONS", "history_note", "history_state", "shows_look_alike", "source_reason"]

HistoryState = Literal["none", "gone", "shown"]

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
    """Whether the explanation's ``because_of`` item is a reason worth showing: a repeat, or a close look-alike.
    The ranker names none below :data:`MIN_BECAUSE` (its one cut-off); an explanation made elsewhere is held to it."""
    if not explanation.get("because_of"):
        return False
    return explanation.get("reason") == "repeat" or float(explanation.get("similarity") or 0.0) >= MIN_BECAUSE


def source_reason(sources: Iterable[str], most: int = 2) -> str:
    """The ``most`` most personal of ``sources`` in words ("other shoppers with your items had it too; trending
    now"); an unknown source by its name."""
    given = list(dict.fromkeys(sources))
    known = [SOURCE_REASONS[s] for s in SOURCE_REASONS if s in given]
    return "; ".join((known + [s for s in given if s not in SOURCE_REASONS])[:most]) or "no source recorded"


def history_state(records: Sequence[Sequence[Any]], removed: AbstractSet[str]) -> HistoryState:
    """What a shopper's explanations could name, from their events (``(item_id, type, ...)``) and the ids not shown
    (hidden, deleted or excluded): "none" (nothing liked: no event, or dislikes only), "gone" (every liked item is
    one not shown, so no explanation names one), else "shown"."""
    disliked = {str(r[0]) for r in records if r[1] == "dislike"}  # a dislike withdraws the item's other events
    liked = {str(r[0]) for r in records} - disliked
    return "none" if not liked else "gone" if liked <= removed else "shown"


def history_note(explanation: Mapping[str, Any], history: HistoryState | None = None) -> str:
    """What follows the sources in words on a line that names no history item: that the items it would be compared
    with are no longer shown, or that there is no history ("popular" picks where the history is not known). A line
    citing "your items" must never also say there are none."""
    if history == "gone":
        return " (the items in your history are no longer shown)"
    if explanation.get("reason") == "popular" and history in (None, "none"):
        return " (no history to compare with)"
    return ""
