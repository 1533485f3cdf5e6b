"""A variant's own item ids (its ``pins``, ``boosts`` and ``bury``, ``category:`` keys aside) that the catalogue lacks.

Such an id acts on nothing: a variant whose every change names a typo'd item serves the control's lists, an A/A test
under an A/B name. The ids are not refused at start-up (items may be added later). When the API starts, each active
variant's ids are looked up once and the missing ones logged as a warning naming the experiment, the variant and the
ids; the lists of that variant then name those still missing in ``meta.unknown_items``, as they name a request's own.
Only the ids missing at start-up are looked up again per request, so a variant whose ids were all known costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from recsys.experiments.definitions import Assignment, Experiments

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(experiment, variant)"""


class VariantItems:
    """The item ids each active variant names, and which of them the catalogue lacked at start-up."""

    def __init__(self, experiments: Experiments) -> None:
        self._named: dict[Key, list[str]] = {(e.name, v.name): ids for e in experiments.all if e.active
                                             for v in e.variants if (ids := v.item_ids())}
        self._missing: dict[Key, list[str]] | None = None
        """None: not looked up yet (or the store did not answer): every named id is looked up per request."""

    def check(self, unknown_items: Callable[[Sequence[str]], list[str]]) -> dict[Key, list[str]]:
        """Look the named ids up (``unknown_items``: the catalogue's), warn about the missing ones and return them
        per (experiment, variant). A store that does not answer is no reason to stop: the ids are then looked up
        with each request instead."""
        try:
            missing = {key: found for key, ids in self._named.items() if (found := unknown_items(ids))}
        except Exception as e:  # a check that only warns never stops the server
            log.warning("could not look up the item ids experiment variants name (%s): looked up per request", e)
            return {}
        for (exp, variant), ids in missing.items():
            log.warning("experiment %r, variant %r names item ids the catalogue lacks (they act on nothing until "
                        "added; lists say so in meta.unknown_items): %s", exp, variant, ", ".join(ids))
        self._missing = missing
        return missing

    def to_check(self, assigned: Assignment | None) -> list[str]:
        """The ids of the user's variant to look up with a request's own for ``meta.unknown_items``: those missing
        at start-up (all it names when the start-up lookup did not run)."""
        if assigned is None:
            return []
        key = (assigned.experiment, assigned.variant.name)
        return (self._named if self._missing is None else self._missing).get(key, [])
