"""Explanations: why an item was recommended (DESIGN.md decision 9)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

from recsys.ranking.catalog import ItemTable
from recsys.ranking.history import History
from recsys.store.tables import HISTORY_TYPES

MIN_BECAUSE = 0.3
"""A history item is named as a pick's look-alike (``reason`` "similar") only from this fused cosine on: "like an
item you bought" beside a 0.09, or a -0.2, is no reason. Below it the pick's sources are its reason. The one cut-off
of the API, the library, the CLI and the explorer (:mod:`recsys.serving.reasons` reads it from here)."""

UNPERSONAL_SOURCES = frozenset({"trending", "popular"})
"""Candidate sources that owe nothing to the shopper's history: a pick from these alone is explained "popular"."""


def explain_item(table: ItemTable, history: History, row: int, score: float, sources: list[str],
                 ranker_id: str, recent: np.ndarray | None = None,
                 removed: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    """Score, sources, the history item most similar to the item, and the text vs image share of that similarity.

    The shares split the similarity between the per-modality similarities (text·text and image·image); an item
    pair without two images is explained by text alone. ``recent``: :func:`recent_rows` of the history, when the
    caller explains several items of one list (made once). Only an item still served is named: none the table
    marks unavailable, nor any in ``removed`` (ids hidden or deleted since it was made; a caller passing ``recent``
    may leave them out of it with :func:`served_rows` once instead). The closest one is the reason (``similar``) from
    :data:`MIN_BECAUSE` on; below it the sources are (:func:`source_form`), the closest item still given.
    """
    out: dict[str, Any] = {"score": round(score, 6), "sources": sources, "ranker": ranker_id}
    if len(history) and (history.rows == row).any():
        # the item itself is in the history: "you bought this on ...", not a look-alike
        out["reason"] = "repeat"
        out["because_of"] = table.ids[row]
        out["because_event"] = _last_event(history, row)
        out["similarity"] = 1.0
        out["text_share"], out["image_share"] = None, None
        out["text_similarity"], out["image_similarity"] = None, None
    elif len(hist := served_rows(table, recent_rows(history) if recent is None else recent, removed)):
        best, sim = _closest(table, hist, row)
        # the closest history item is always carried (DESIGN decision 9); it is the reason only when it resembles the
        # pick: "like an item you bought" beside a -0.2 is no reason, the pick's sources are (reason history/popular)
        out.update({"reason": "similar"} if sim >= MIN_BECAUSE else source_form(sources, compared=True))
        out["because_of"] = table.ids[best]
        out["because_event"] = _last_event(history, best)
        out["similarity"] = round(sim, 6)
        t_sim = _sim(table.text, row, best)
        i_sim = _sim(table.image, row, best)
        t_pos, i_pos = max(t_sim or 0.0, 0.0), max(i_sim or 0.0, 0.0)
        if i_sim is None or t_pos + i_pos == 0:
            out["text_share"], out["image_share"] = (1.0, 0.0) if i_sim is None else (0.5, 0.5)
        else:
            out["text_share"] = round(t_pos / (t_pos + i_pos), 4)
            out["image_share"] = round(i_pos / (t_pos + i_pos), 4)
        out["text_similarity"] = None if t_sim is None else round(t_sim, 6)
        out["image_similarity"] = None if i_sim is None else round(i_sim, 6)
    else:
        out.update(source_form(sources, compared=False))
    return out


def source_form(sources: list[str], *, compared: bool) -> dict[str, Any]:
    """The reason of a pick no history item explains. ``compared``: history items still served were compared with
    the pick, none closely enough; a pick a history-based source found (co-occurrence, interest, content...) then has
    ``reason`` "history", one from trending or popular items alone "popular", as its sources say. With nothing to
    compare with (no history, or none of it still served) the reason is "popular" whatever the sources, and
    ``because_of`` is null."""
    personal = compared and any(s not in UNPERSONAL_SOURCES for s in sources)
    return {"reason": "history" if personal else "popular", "because_of": None}


def _closest(table: ItemTable, hist: np.ndarray, row: int) -> tuple[int, float]:
    """The row of ``hist`` (served history rows) most like ``row`` and its fused cosine (the item itself is left
    out unless it is the only one)."""
    hist = hist[hist != row] if len(hist) > 1 else hist
    sims = table.fused[hist] @ table.fused[row]
    j = int(np.argmax(sims))
    return int(hist[j]), float(sims[j])


def recent_rows(history: History) -> np.ndarray:
    """The distinct rows of the latest 100 events: the items an explanation may point to (none the shopper
    disliked: "like an item you bought" must not name one they took back)."""
    return np.unique(history.rows[history.seeds][-100:])


def served_rows(table: ItemTable, rows: np.ndarray, removed: AbstractSet[str] = frozenset()) -> np.ndarray:
    """``rows`` without the items no longer served, which an explanation must not name (a client that looks one up
    gets a 404): those the table marks unavailable (hidden or deleted when it was made) and those in ``removed``."""
    rows = rows[table.available[rows]]
    if removed and len(rows):
        rows = rows[np.fromiter((table.ids[r] not in removed for r in rows.tolist()), bool, len(rows))]
    return rows


def _last_event(history: History, row: int) -> dict[str, Any]:
    """The user's latest event on ``row``: its type and day (``{"type": "purchase", "date": "2020-06-23"}``)."""
    import datetime as dt

    at = np.flatnonzero(history.rows == row)
    if not len(at):
        return {"type": None, "date": None}
    i = int(at[-1])
    day = dt.datetime.fromtimestamp(float(history.ts[i]) * 86400.0, tz=dt.UTC).date().isoformat()
    return {"type": HISTORY_TYPES[int(history.types[i])], "date": day}


def _sim(m: np.ndarray | None, a: int, b: int) -> float | None:
    if m is None:
        return None
    va, vb = m[a], m[b]
    if not va.any() or not vb.any():
        return None
    return float(va @ vb)
