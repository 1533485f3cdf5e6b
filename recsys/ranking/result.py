"""One recommended item as the ranker returns it (a light module: the read path's result type builds on it without
loading the pipeline and torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recommendation:
    item_id: str
    score: float
    sources: list[str] = field(default_factory=list)
    explanation: dict[str, Any] | None = None
