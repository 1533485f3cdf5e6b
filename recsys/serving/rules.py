"""Business rules on a served personal list: boosts, bury, pinned slots and an exploration share.

Boosts and ``exclude_seen`` go to the ranker (:meth:`recsys.ranking.RankingPipeline.recommend`); the rest act on its
ranked list here, after ranking, in this order:

1. **bury**: items (``item_id``) or categories (``category:NAME``) go below every other item. The ranker is asked for
   twice the items when something is buried, so a buried item usually falls out of the list instead of filling its
   tail.
2. **exploration**: a share of the list (rounded at random, so 0.1 of 20 is two items) is replaced by items sampled
   from the long tail (the half of the catalogue with the fewest recent events, new items included), tagged
   ``sources: ["exploration"]``, at random positions after the first three. The sample is seeded by the request's
   user and hour: a cached list and its fresh twin agree.
3. **pins**: ``{item_id: position}`` (1-based) puts each item at its position, tagged ``pinned``, whatever the
   ranker thought of it; a pinned item that is removed, excluded, unknown or in the user's history (a dislike
   included) is left out. In a feed the position counts over all its pages (:meth:`ListRules.on_page`). A pin
   names an item: ``category:NAME`` is refused (it pinned nothing).

In an explained list (the ranked items carry explanations) an item a rule put there is explained too: ``reason``
``pinned`` or ``exploration`` (:func:`explained`).

``ranker`` names a stored ranker generation that ranks the list instead of the served one (an experiment's variant:
:meth:`recsys.serving.generations.Generations.variant_ranker`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.errors import ValidationFailed
from recsys.ranking.rules import fold_category
from recsys.serving.results import ScoredItem
from recsys.store.limits import MAX_K

if TYPE_CHECKING:
    import pandas as pd

    from recsys.ranking import RankingPipeline
    from recsys.ranking.history import History

SOURCES = ("ranker", "popular")
"""What a list is ranked from: the personal ranker, or popularity alone (what an unknown user gets)."""
EXPLORE_AFTER = 3
"""Exploration items are placed after this many ranked items."""
GENERATION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
"""A ranker generation's name (a directory under ``<home>/rankers``: no path separators, no leading dot)."""
MAX_BOOST = 100.0
"""The largest boost or demotion, in units of the list's score spread."""
CATEGORY = "category:"
"""The prefix of a boost or bury key naming a category (a pin takes item ids only)."""
WHOLE = re.compile(r"-?[0-9]+")
"""A whole number as a pin's position is written: ASCII digits (``int`` also took ``1_0``, `` 1`` and ``١``)."""
RULE_SOURCES = ("pinned", "exploration")
"""The tags of the items list rules put on a list: such an item's explanation gives its rule as the ``reason``."""


@dataclass(frozen=True)
class ListRules:
    """Rules for one personal list; hashable (part of the result cache key). Empty rules change nothing."""

    boosts: tuple[tuple[str, float], ...] = ()
    bury: tuple[str, ...] = ()
    pins: tuple[tuple[str, int], ...] = ()
    exploration: float = 0.0
    exclude_seen: bool | None = None
    source: str = "ranker"
    ranker: str | None = None
    """A stored ranker generation (its version, or its ``ranker-`` id) to rank with; None: the served one."""

    @classmethod
    def of(cls, *, boosts: Mapping[str, float] | None = None, bury: Sequence[str] = (),
           pins: Mapping[str, int] | None = None, exploration: float = 0.0, exclude_seen: bool | None = None,
           source: str = "ranker", ranker: str | None = None) -> ListRules:
        """Checked rules: boosts within +-MAX_BOOST, pins of item ids (a ``category:NAME`` key is refused) at
        positions 1..1000 (one item per position), exploration in [0, 1]."""
        empty = [what for what, keys in (("boost", boosts or {}), ("bury", bury), ("pin", pins or {}))
                 if any(not str(k).strip() for k in keys)]
        if empty:
            raise ValidationFailed(f"{empty[0]}: an empty key; name an item id or category:NAME")
        cats = [str(k) for k in pins or {} if str(k).startswith(CATEGORY)]
        if cats:  # no item has such an id: the pin acted on nothing, and said nothing
            raise ValidationFailed(f"pin {cats[0][:60]!r}: a pin takes an item id, not a category (boost or bury "
                                   "a category: category:NAME)")
        for key, b in (boosts or {}).items():
            if not math.isfinite(float(b)):
                raise ValidationFailed(f"boost {key!r}: the weight must be a finite number")
            if abs(float(b)) > MAX_BOOST:  # 1e308 twice overflowed to inf, and the item was dropped as unscorable
                raise ValidationFailed(f"boost {key!r}: the weight must be within -{MAX_BOOST:g}..{MAX_BOOST:g} "
                                       "score spreads (10 already moves an item past all others; pin places it)")
        both = sorted(set(map(str, pins or {})) & set(map(str, bury)))
        if both:  # which one wins would be a guess
            raise ValidationFailed(f"{both[0]!r} is both pinned and buried; keep one of the two rules")
        seen: dict[int, str] = {}
        for item, pos in (pins or {}).items():
            if not 1 <= int(pos) <= MAX_K:
                raise ValidationFailed(f"pin {item!r}: the position must be 1..{MAX_K}, got {pos}")
            if int(pos) in seen:
                raise ValidationFailed(f"pin {item!r}: position {pos} is already pinned to {seen[int(pos)]!r}")
            seen[int(pos)] = item
        if not 0.0 <= exploration <= 1.0:
            raise ValidationFailed(f"exploration must be a share in [0, 1], got {exploration}")
        if source not in SOURCES:
            raise ValidationFailed(f"unknown list source {source!r}; use one of {', '.join(SOURCES)}")
        if ranker is not None and not GENERATION_NAME.match(ranker):
            raise ValidationFailed(f"ranker {ranker[:60]!r} is not a ranker generation name (see `recsys ranker list`)")
        return cls(tuple(sorted((str(k), float(v)) for k, v in (boosts or {}).items())),
                   tuple(dict.fromkeys(str(b) for b in bury)),
                   tuple(sorted(((str(i), int(p)) for i, p in (pins or {}).items()), key=lambda x: x[1])),
                   float(exploration), exclude_seen, source, ranker)

    def merged(self, over: ListRules, *, explore_set: bool = False) -> ListRules:
        """These rules with ``over``'s on top: its boosts replace the same keys; its pins replace any of these
        that name the same item or position; its bury adds; an item it pins is no longer buried and one it buries
        no longer pinned; its ``exclude_seen``, source and ranker replace when set, and its exploration when
        ``explore_set`` (a request's explicit 0 turns a variant's exploration off)."""
        items, positions = {i for i, _ in over.pins}, {p for _, p in over.pins}
        pins = {i: p for i, p in self.pins if i not in items and p not in positions and i not in over.bury}
        kept_bury = [b for b in self.bury if b not in items]
        return ListRules.of(boosts={**dict(self.boosts), **dict(over.boosts)}, bury=[*kept_bury, *over.bury],
                            pins={**pins, **dict(over.pins)},
                            exploration=over.exploration if explore_set else self.exploration,
                            exclude_seen=self.exclude_seen if over.exclude_seen is None else over.exclude_seen,
                            source=over.source if over.source != "ranker" else self.source,
                            ranker=over.ranker or self.ranker)

    def on_page(self, offset: int) -> ListRules:
        """These rules for a feed's page after ``offset`` items: a pin's position counts over the whole feed, so
        one past the first page's k lands on the page that reaches it; pins of earlier pages are left behind."""
        if not offset or not self.pins:
            return self
        return replace(self, pins=tuple((i, p - offset) for i, p in self.pins if p > offset))

    @property
    def reorders(self) -> bool:
        """Whether anything acts on the ranked list (the ranker alone is enough otherwise)."""
        return bool(self.bury or self.pins or self.exploration > 0)

    def fetch(self, k: int) -> int:
        """How many items to ask the ranker for: twice k when something may be buried."""
        return min(MAX_K, 2 * k) if self.bury else k


NO_RULES = ListRules()


def parse_pairs(values: Sequence[str], what: str, cast: Callable[[str], Any]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (the query string's and the CLI's ``boost``/``pin``) as a dict; the last ``=`` splits,
    so a key may hold one (``category:a=b=2``). A whole number (``cast`` int: a pin's position) is ASCII digits."""
    out: dict[str, Any] = {}
    for v in values:
        key, sep, raw = v.rpartition("=")
        if not sep or not key or len(key) > 400 or "\x00" in key:
            raise ValidationFailed(f"{what} {v[:60]!r} is not KEY=VALUE")
        if key in out:  # the last would win silently
            raise ValidationFailed(f"{what} {key[:60]!r} is given twice")
        try:
            if cast is int and not WHOLE.fullmatch(raw):  # a typo is refused, not read as another place
                raise ValueError(raw)
            out[key] = cast(raw)
        except ValueError:
            kind = "a whole number (ASCII digits)" if cast is int else "a number"
            raise ValidationFailed(f"{what} {v[:60]!r}: {raw[:20]!r} is not {kind}") from None
    return out


def apply_rules(items: list[ScoredItem], k: int, rules: ListRules, *, category_of: Callable[[str], str | None],
                known: Callable[[str], bool], pool: Callable[[], list[str]], banned: AbstractSet[str],
                seed: int) -> list[ScoredItem]:
    """The ranked ``items`` with the bury, exploration and pin rules applied, cut to ``k``.

    ``category_of(item_id)`` names an item's category; ``known(item_id)`` says whether an item may be served at all
    (indexed and available); ``pool()`` gives the exploration candidates (asked only when exploring); ``banned``
    holds ids never to add (removed, excluded, in the user's history)."""
    out = bury(items, rules.bury, category_of)
    if rules.exploration > 0:  # an exploration slot never brings back what the list buried
        is_buried = buried_by(rules.bury, category_of)
        out = explore(out, k, rules.exploration, lambda: [i for i in pool() if not is_buried(i)], banned,
                      random.Random(seed))
    out = out[:k]
    if rules.pins:
        out = pin(out, k, [(i, p) for i, p in rules.pins if i not in banned and known(i)])
    template = next((it.explanation for it in items if it.explanation is not None), None)
    return out if template is None else explained(out, template)


def explained(items: list[ScoredItem], template: Mapping[str, Any]) -> list[ScoredItem]:
    """``items`` of an explained list with the list rules' part said. An item a rule put on the list gets an
    explanation in the form of the ranker's "popular" one (``because_of`` null), its ``reason`` the rule's tag
    (``pinned`` before ``exploration``) and its ``ranker`` and ``index_generation`` those of ``template`` (a ranked
    item's explanation); a ranked item a pin moved keeps the ranker's reason, with the item's own ``sources``
    (``pinned`` included)."""
    out = []
    for it in items:
        expl = it.explanation
        ruled = [s for s in RULE_SOURCES if s in it.sources]
        if ruled and expl is None:
            expl = {"score": round(float(it.score), 6), "sources": list(it.sources), "ranker": template.get("ranker"),
                    "reason": ruled[0], "because_of": None}
            if "index_generation" in template:
                expl["index_generation"] = template["index_generation"]
        elif ruled and expl is not None and expl.get("sources") != list(it.sources):
            expl = {**expl, "sources": list(it.sources)}
        out.append(it if expl is it.explanation else replace(it, explanation=expl))
    return out


def bury(items: list[ScoredItem], keys: Sequence[str], category_of: Callable[[str], str | None]) -> list[ScoredItem]:
    """``items`` with those named by ``keys`` (ids, ``category:NAME``) moved below the rest, in their order."""
    if not keys:
        return list(items)
    buried = buried_by(keys, category_of)
    flags = [buried(it.item_id) for it in items]
    return [it for it, b in zip(items, flags, strict=True) if not b] + \
        [it for it, b in zip(items, flags, strict=True) if b]


def buried_by(keys: Sequence[str], category_of: Callable[[str], str | None]) -> Callable[[str], bool]:
    """Whether an item id is named by the bury ``keys`` (its id, or ``category:NAME`` of its category)."""
    ids = {k for k in keys if not k.startswith(CATEGORY)}
    cats = {fold_category(k.split(":", 1)[1]) for k in keys if k.startswith(CATEGORY)}
    return lambda item_id: item_id in ids or (bool(cats) and fold_category(category_of(item_id)) in cats)


def explore(items: list[ScoredItem], k: int, share: float, pool: Callable[[], list[str]],
            banned: AbstractSet[str], rng: random.Random) -> list[ScoredItem]:
    """``items[:k]`` with about ``share * k`` of them replaced by items sampled from ``pool()``, each at a random
    position after the first :data:`EXPLORE_AFTER`, tagged ``exploration``."""
    top = list(items[:k])
    want = int(share * k) + (rng.random() < share * k - int(share * k))
    want = min(want, max(0, len(top) - EXPLORE_AFTER))  # a list of three or fewer keeps its ranked items
    if want <= 0:
        return top
    shown = {it.item_id for it in top}
    candidates = [i for i in pool() if i not in shown and i not in banned]
    picks = rng.sample(candidates, min(want, len(candidates)))
    if not picks:
        return top
    slots = sorted(rng.sample(range(EXPLORE_AFTER, len(top)), len(picks)))
    kept = top[: len(top) - len(picks)]
    for pos, item_id in zip(slots, picks, strict=True):
        score = kept[pos - 1].score if 0 < pos <= len(kept) else (kept[-1].score if kept else 0.0)
        kept.insert(pos, ScoredItem(item_id, score, ["exploration"]))
    return kept


def pin(items: list[ScoredItem], k: int, pins: Sequence[tuple[str, int]]) -> list[ScoredItem]:
    """``items`` with each pinned item at its 1-based position (or last, for a position past a list shorter than
    ``k``), tagged ``pinned``; the list keeps at most ``k`` items. A pin past ``k`` is not in this list: placed
    last, it took the last place of every shorter page."""
    pins = [(i, p) for i, p in pins if p <= k]
    pinned = {i for i, _ in pins}
    by_id = {it.item_id: it for it in items}
    rest = [it for it in items if it.item_id not in pinned]
    out = rest[: max(0, k - len(pins))]
    for item_id, pos in sorted(pins, key=lambda x: x[1]):
        at = min(pos - 1, len(out))
        near = out[at - 1].score if at > 0 and out else (out[0].score if out else 0.0)
        base = by_id.get(item_id)
        it = replace(base, sources=[*base.sources, "pinned"]) if base is not None else \
            ScoredItem(item_id, near, ["pinned"])
        out.insert(at, it)
    return out[:k]


def long_tail(ranker: RankingPipeline, now: float) -> list[str]:
    """Exploration candidates: available items in the less popular half of the catalogue by recent events (items
    without any, new ones included), in catalogue order."""
    table = ranker.table
    pop = np.asarray(ranker.stats.pop_at(now), dtype=float)  # the ranker keeps its statistics aligned to its table
    live = np.flatnonzero(table.available)
    if not len(live):
        return []
    tail = live[pop[live] <= float(np.median(pop[live]))]
    return [table.ids[r] for r in tail]


def table_lookups(ranker: RankingPipeline) -> tuple[Callable[[str], str | None], Callable[[str], bool]]:
    """(an item's category name, whether an item may be served) over the ranker's item table."""
    table = ranker.table
    names = table.category_names

    def category_of(item_id: str) -> str | None:
        r = table.index.get(item_id)
        if r is None or names is None or table.category[r] < 0:
            return None
        return str(names[int(table.category[r])])

    def known(item_id: str) -> bool:
        r = table.index.get(item_id)
        return r is not None and bool(table.available[r])

    return category_of, known


def with_rules(items: list[ScoredItem], k: int, rules: ListRules, ranker: RankingPipeline,
               hist: pd.DataFrame | History | None, banned: AbstractSet[str], now: float,
               seed: int, allowed: Sequence[str] | None = None) -> list[ScoredItem]:
    """A ranker's list with bury, exploration and pins applied (:func:`apply_rules`) over its item table; nothing
    the user has a history with (disliked items included), nothing removed or excluded (``banned``) is added, and
    with ``allowed`` (the ids a request's filter lets through) nothing outside it: exploration and pins keep to the
    filter too."""
    from recsys.ranking.history import History

    own: set[str] = set()
    if isinstance(hist, History):  # its rows are the positive events: dislikes are kept apart, and never come back
        own = {ranker.table.ids[r] for r in (*hist.rows.tolist(), *hist.disliked.tolist())}
    elif hist is not None and len(hist):
        own = {str(i) for i in hist["item_id"]}
    category_of, known = table_lookups(ranker)
    keep = None if allowed is None else set(allowed)

    def pool() -> list[str]:
        tail = long_tail(ranker, now)
        return tail if keep is None else [i for i in tail if i in keep]

    return apply_rules(items, k, rules, category_of=category_of,
                       known=known if keep is None else lambda i: i in keep and known(i),
                       pool=pool, banned=set(banned) | own, seed=seed)
