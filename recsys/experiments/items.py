"""What a variant's rules name that the catalogue lacks: item ids (its ``pins``, ``boosts`` and ``bury``) and
categories (its ``category:NAME`` boosts and bury keys).

Such a key acts on nothing: a variant whose every change names a typo'd item or category serves the control's
lists, an A/A test under an A/B name. The keys are not refused at start-up (items may be added later). When the API
starts, each active variant's keys are looked up once and the missing ones logged as a warning naming the
experiment, the variant and the keys; the lists of that variant then name those still missing in
``meta.unknown_items`` (a category as its ``category:NAME`` key), as they name a request's own. Only the keys
missing at start-up are looked up again per request, so a variant whose keys were all known costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from recsys.experiments.definitions import Assignment, Experiments
from recsys.ranking.rules import fold_category

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(experiment, variant)"""
Lookup = Callable[[Sequence[str]], list[str]]
"""The keys among those given that the catalogue lacks."""
CATEGORY = "category:"


class VariantItems:
    """The item ids and category keys each active variant names, and which of them the catalogue lacked at start."""

    def __init__(self, experiments: Experiments) -> None:
        self._named: dict[Key, list[str]] = {(e.name, v.name): keys for e in experiments.all if e.active
                                             for v in e.variants if (keys := [*v.item_ids(), *v.category_keys()])}
        self._missing: dict[Key, list[str]] | None = None
        """None: not looked up yet (or the store did not answer): every named key is looked up per request."""

    def check(self, unknown_items: Lookup, unknown_categories: Lookup | None = None) -> dict[Key, list[str]]:
        """Look the named keys up (``unknown_items`` and ``unknown_categories``: the catalogue's, see
        :func:`unknown_keys`), warn about the missing ones and return them per (experiment, variant). A store that
        does not answer is no reason to stop: the keys are then looked up with each request instead."""
        try:
            missing = {key: found for key, named in self._named.items()
                       if (found := unknown_keys(named, unknown_items, unknown_categories))}
        except Exception as e:  # a check that only warns never stops the server
            log.warning("could not look up the items and categories experiment variants name (%s): looked up per "
                        "request", e)
            return {}
        for (exp, variant), keys in missing.items():
            log.warning("experiment %r, variant %r names %s the catalogue lacks (they act on nothing until added; "
                        "lists say so in meta.unknown_items): %s", exp, variant, _what(keys), ", ".join(keys))
        self._missing = missing
        return missing

    def to_check(self, assigned: Assignment | None) -> list[str]:
        """The keys of the user's variant to look up with a request's own for ``meta.unknown_items``: those missing
        at start-up (all it names when the start-up lookup did not run)."""
        if assigned is None:
            return []
        key = (assigned.experiment, assigned.variant.name)
        return (self._named if self._missing is None else self._missing).get(key, [])


def unknown_keys(keys: Sequence[str], unknown_items: Lookup, unknown_categories: Lookup | None) -> list[str]:
    """The rule keys among ``keys`` (item ids, ``category:NAME``) that the catalogue lacks, once each, in order."""
    named = list(dict.fromkeys(keys))
    ids = [k for k in named if not k.startswith(CATEGORY)]
    cats = [k for k in named if k.startswith(CATEGORY)]
    missing = set(unknown_items(ids) if ids else ()) | set(unknown_categories(cats) if cats and unknown_categories
                                                             else ())
    return [k for k in named if k in missing]


def unknown_categories(catalogue: Any, keys: Sequence[str]) -> list[str]:
    """The ``category:NAME`` keys among ``keys`` whose category no live item has: asked of the catalogue when it
    answers itself (``unknown_categories``), else of its store in one read; a catalogue with neither (a test double
    without a store) finds none missing."""
    wanted = list(dict.fromkeys(k for k in keys if k.startswith(CATEGORY)))
    own = getattr(catalogue, "unknown_categories", None)
    if not wanted or callable(own):
        return list(own(wanted)) if wanted and callable(own) else []
    store = getattr(catalogue, "store", None)
    if store is None:
        return []
    from sqlalchemy import select

    from recsys.store.tables import Item

    with store.session() as s:  # a catalogue's categories are few; they compare as rules apply them, folded
        known = {fold_category(c) for c in s.scalars(select(Item.category).where(~Item.deleted).distinct())}
    return [k for k in wanted if fold_category(k.removeprefix(CATEGORY)) not in known]


def _what(keys: Sequence[str]) -> str:
    cats = sum(k.startswith(CATEGORY) for k in keys)
    return "categories" if cats == len(keys) else "item ids" if not cats else "item ids and categories"
