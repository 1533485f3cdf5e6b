"""The Recommender: the one object the HTTP API, the CLI and notebooks call (DESIGN.md section 1).

It owns no state of its own beyond handles: SQL is the source of truth, the index and ranker are immutable
generations it loads and swaps atomically when newer ones appear (:meth:`Recommender.refresh`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.config import Settings, get_settings
from recsys.store import Store
from recsys.store.events import EventResult, ingest_events

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]


@dataclass
class ScoredItem:
    """One result: the item id, its score, where it came from and (on request) why."""

    item_id: str
    score: float
    sources: list[str] = field(default_factory=list)
    explanation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["explanation"] is None:
            d.pop("explanation")
        return d


class Recommender:
    """Retrieval, recommendations, feedback and builds over one store and one data directory."""

    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        self.settings = settings or get_settings()
        self.store = store or Store.open(self.settings)
        self._lock = threading.RLock()

    # -- feedback -------------------------------------------------------------------------------------------
    def ingest_events(self, events: Sequence[Mapping[str, Any]]) -> list[EventResult]:
        """Store events (committed before this returns); each gets a stored / duplicate / error result."""
        return ingest_events(self.store, events)
