"""The online report: what the served lists led to, per source (endpoint), ranker version and index generation.

An event is attributed when it carries the ``recommendation_id`` of a recorded served list, comes from its user,
names an item it showed and is not dated before the list was served (clock skew allowed), once per type and item
(``recsys.feedback.attribution``; the rest is ``unattributed``). Rates are over exposures: the impressions clients
posted for those lists, or, for a group with none, the items the lists showed.
Intervals are 95% Wilson score intervals (sound near 0 and for small counts, unlike the normal approximation).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from recsys.errors import ValidationFailed
from recsys.feedback.attribution import attributed
from recsys.store.tables import ServedList

COUNTED = {"impression": "impressions", "click": "clicks", "like": "likes", "add_to_cart": "add_to_cart",
           "purchase": "purchases"}
Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> dict[str, float | None]:
    """The rate ``successes / trials`` with its Wilson score interval; all None without trials. Successes beyond
    the trials (more clicks than impressions: a client that sends no impression for some lists) are capped."""
    if trials <= 0:
        return {"rate": None, "low": None, "high": None}
    k = min(max(successes, 0), trials)
    p = k / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == trials else min(1.0, centre + half)
    return {"rate": p, "low": low, "high": high}


def parse_since(text: str) -> datetime:
    """A report's ``since`` as the API and the CLI take it: ISO 8601 (naive = UTC) or unix seconds, as everywhere
    else in recsys; a time to come is fine (nothing served yet)."""
    from recsys.store.importers.records import datetime_of

    try:
        return datetime_of(text)
    except ValueError:
        raise ValidationFailed(f"since {text[:40]!r} is not a time: use ISO 8601 (e.g. 2026-12-01T00:00:00Z) or "
                               "unix seconds; a time out of range is refused too") from None


def utc_naive(since: datetime | None) -> datetime | None:
    """A report's ``since`` as the store keeps times: an aware time converted to UTC, a naive one taken as UTC."""
    if since is None or since.tzinfo is None:
        return since
    try:
        return since.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # 0001-01-01T00:00+05:00 and the like: before or after what a datetime holds in UTC
        raise ValidationFailed(f"since {since.isoformat()} is out of range once converted to UTC") from None


def feedback_report(store: Any, *, since: datetime | None = None) -> dict[str, Any]:
    """Lists served since ``since`` (all without it; an aware time is converted to UTC, a naive one is UTC) and
    the events attributed to them, grouped by source, ranker version and index generation; ``totals`` over every
    group."""
    since = utc_naive(since)
    keys = (ServedList.source, ServedList.ranker_version, ServedList.index_generation)
    lists_q = select(*keys, func.count(ServedList.id), func.coalesce(func.sum(ServedList.size), 0)).group_by(*keys)
    if since is not None:
        lists_q = lists_q.where(ServedList.created_at >= since)
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    with store.session() as s:
        for source, ranker, gen, n, size in s.execute(lists_q):
            groups[(source, ranker, gen)] = _group(source, ranker, gen, int(n), int(size))
        for key, etype, n in attributed(s, keys, list(COUNTED),
                                        *(() if since is None else (ServedList.created_at >= since,))):
            g = groups.setdefault(key, _group(key[0], key[1], key[2], 0, 0))
            g[COUNTED[etype] if etype else "unattributed"] += n
    rows = [_rates(g) for _, g in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0]))]
    total = _group(None, None, None, 0, 0)
    for g in rows:
        for field in ("lists", "items_served", *COUNTED.values(), "unattributed"):
            total[field] += g[field]
    # each group's own exposures, summed: one group's impressions must not turn the others' into zero exposures
    bases = {g["exposure_basis"] for g in rows}
    totals = _rates(total, exposures=sum(g["exposures"] for g in rows),
                    basis=bases.pop() if len(bases) == 1 else "mixed" if bases else "items_served")
    for field in ("source", "ranker_version", "index_generation"):
        totals.pop(field)
    return {"since": since.isoformat() if since is not None else None, "confidence": 0.95, "groups": rows,
            "totals": totals}


def _group(source: Any, ranker: Any, gen: Any, lists: int, size: int) -> dict[str, Any]:
    return {"source": source, "ranker_version": ranker, "index_generation": gen, "lists": lists,
            "items_served": size, **dict.fromkeys(COUNTED.values(), 0), "unattributed": 0}


def _rates(g: dict[str, Any], *, exposures: int | None = None, basis: str | None = None) -> dict[str, Any]:
    basis = basis or ("impressions" if g["impressions"] > 0 else "items_served")
    exposures = int(g[basis]) if exposures is None else exposures
    return {**g, "exposures": exposures, "exposure_basis": basis, "ctr": wilson(g["clicks"], exposures),
            "conversion_rate": wilson(g["purchases"], exposures)}
