"""The one result type of the read path (search, similar, recommendations) and its plain-JSON form."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from recsys.ranking.result import Recommendation


@dataclass
class ScoredItem(Recommendation):
    """One result of the read path: the ranker's (item id, score, sources, explanation) plus what a client shows."""

    item: dict[str, Any] | None = None
    """What a client shows: title, category, price, image_url (``api.result_details``)."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"item_id": self.item_id, "score": self.score, "sources": list(self.sources)}
        if self.explanation is not None:
            d["explanation"] = self.explanation
        if self.item is not None:
            d["item"] = self.item
        return d

    @cached_property
    def as_json(self) -> str:
        """This result as the API's JSON object. Memoised: the items of a cached list are serialised once, not on
        every request the cache answers (results are never changed once made)."""
        return json.dumps(result_object(self.item_id, self.score, self.sources, self.explanation, self.item),
                          default=str, allow_nan=False)


def scored_hits(hits: Sequence[tuple[str, float]], source: str) -> list[ScoredItem]:
    """Search hits (id, score) as results from one ``source``, scores rounded as every list's are."""
    return [ScoredItem(i, round(float(sc), 6), [source]) for i, sc in hits]


def result_list_bytes(items: Sequence[ScoredItem]) -> int:
    """Memory held by a cached list of results, estimated from each result's JSON (memoised anyway: the API sends
    it): measured with tracemalloc at ~500 bytes per plain result and ~900 with an explanation, in the bound."""
    return 120 + sum(300 + int(2.5 * len(it.as_json)) for it in items)


def result_object(item_id: Any, score: Any, sources: Any, explanation: Any,
                  item: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A result as plain JSON: a non-finite score becomes null, numpy values in explanations plain numbers."""
    score = float(score)
    out = {"item_id": str(item_id), "score": score if math.isfinite(score) else None,
           "sources": [str(s) for s in sources or ()], "explanation": plain_json(explanation)}
    if item is not None:
        out["item"] = plain_json(dict(item))
    return out


def plain_json(v: Any) -> Any:
    """``v`` with numpy scalars and arrays made lists and numbers, and non-finite floats made None."""
    if isinstance(v, dict):
        return {str(k): plain_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain_json(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        return plain_json(v.item() if getattr(v, "ndim", 0) == 0 else v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
