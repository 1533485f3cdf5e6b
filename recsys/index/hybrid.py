"""Words and vectors together: text search that fuses keyword (lexical) and vector results.

Vector search ranks by meaning and finds "black dress" without the words; keyword search finds the rare words, names
and codes a vector blurs ("leopard", "Odessa", a product code). :func:`hybrid_search` runs both and fuses the two
rankings by weighted reciprocal-rank fusion (Cormack et al. 2009): an item at rank r of a list scores
``weight / (RRF_K + r)`` from it, the scores add up, and the sum orders the result. Ranks, not raw scores, so BM25's
unbounded numbers and cosines need no calibration against each other.

Modes: ``vector`` (vector search alone, as before), ``lexical`` (keyword matches first, by keyword rank, then vector
results to fill k) and ``hybrid`` (the fusion; the default over the fused vectors, while a request for one tower,
``modality`` text or image, defaults to that tower's vectors alone). Lexical results are held to the same rules as
vector ones: only items the served generation holds, passing the filter, not removed, not excluded; the keyword
matches are read deeper while too few of them pass (:func:`keyword_matches`). The vector list alone already has k
items whenever k qualify, so a fused list does too. A query that is exactly an item id puts that item first, and a
code-like query (a SKU, a product number) its keyword matches (lexical and hybrid modes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from recsys.errors import ValidationFailed

if TYPE_CHECKING:
    from recsys.index.meta import ItemFilter
    from recsys.index.reader import Hits, IndexReader

SEARCH_MODES = ("vector", "lexical", "hybrid")
DEFAULT_MODE = "hybrid"
DEFAULT_LEXICAL_WEIGHT = 0.5
"""Share of the fusion given to the keyword ranking (the vector ranking gets the rest). Chosen on H&M
(bench/lexical.py, seeds 0 and 1): 0.6 lifts rare-word recall@20 to the keyword index's own ceiling (0.980 / 0.978,
against 0.959 / 0.948 at 0.5) but costs broad "colour type" queries up to 0.024 of type precision@20 against
vector-only search; 0.5 stays within 0.01 of it. A request that knows it holds names or rare words sends more."""
RRF_K = 60
"""The constant of reciprocal-rank fusion: how flat the credit for rank is (60, as in the paper and most engines)."""
LEXICAL_CUT = 0.5
"""Hybrid mode fuses the keyword matches scoring at least this share of the best match's score."""
MIN_DEPTH = 100
"""Each list is read this deep at least (k deep when k is larger): fusion needs more than the top k of each."""
MAX_DEPTH = 1000
LEXICAL_FETCH_MAX = 10_000
"""Keyword matches read at most this deep when a filter or the exclusions leave fewer than the list needs: a common
word inside a narrow filter ("leopard" among dresses, behind hundreds of leopard tights) is still found, and a
filter that keeps fewer than that among more matches costs a bounded number of reads (2 * depth, doubled)."""

_CODE = re.compile(r"(?=[^\s]*\d)[\w\-./#]{2,64}")

VECTOR, LEXICAL, ID = "search", "lexical", "id"
"""Source names on results: the vector search (its name before fusion existed), the keyword index, an id match."""


@dataclass
class Hit:
    """A fused result: item id, score (fusion score; cosine in vector mode) and the lists that found it."""

    item_id: str
    score: float
    sources: list[str] = field(default_factory=list)


def default_mode(modality: str) -> str:
    """The mode of a request that names none: hybrid over the fused vectors; a request for one tower's vectors
    (``text``, ``image``) asks for that tower alone, so it stays vector search."""
    return DEFAULT_MODE if modality == "fused" else "vector"


def looks_like_code(query: str) -> bool:
    """One word of letters, digits and ``-_./#`` with at least one digit: "0108775", "AB-1234", "501"."""
    return _CODE.fullmatch(query.strip()) is not None


def check_mode(mode: str, lexical_weight: float | None) -> float:
    """Validate a request's mode and weight; returns the weight to use."""
    if mode not in SEARCH_MODES:
        raise ValidationFailed(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
    w = DEFAULT_LEXICAL_WEIGHT if lexical_weight is None else float(lexical_weight)
    if not 0.0 <= w <= 1.0:
        raise ValidationFailed(f"lexical_weight must be between 0 and 1, got {lexical_weight}")
    return w


def rrf(ranked: Mapping[str, Sequence[str]], weights: Mapping[str, float], c: int = RRF_K) -> list[Hit]:
    """Weighted reciprocal-rank fusion of ranked id lists (best first), named by source. Ties keep the order in
    which items were first met (lists in the mapping's order, each best first)."""
    hits: dict[str, Hit] = {}
    for name, ids in ranked.items():
        w = weights.get(name, 1.0)
        for r, i in enumerate(dict.fromkeys(ids), 1):
            h = hits.setdefault(i, Hit(i, 0.0))
            h.score += w / (c + r)
            h.sources.append(name)
    return sorted(hits.values(), key=lambda h: -h.score)


def keyword_matches(reader: IndexReader, query: str, depth: int, lexical: Callable[[str, int], Hits],
                    filter: ItemFilter | None, exclude: set[str]) -> tuple[dict[str, float], list[str]]:
    """(id -> keyword score of the matches read, the first ``depth`` of them that the generation serves, pass
    ``filter`` and are not excluded). The database's matches know no filter, so they are read 2 * depth deep (headroom
    for the few left out), then twice as deep again while fewer than ``depth`` pass and more remain, up to
    :data:`LEXICAL_FETCH_MAX`."""
    limit = 2 * depth
    while True:
        hits = lexical(query, limit)
        found = dict(hits)
        kept = reader.keep(list(found), filter, exclude)
        if len(kept) >= depth or len(hits) < limit or limit >= LEXICAL_FETCH_MAX:
            return found, kept[:depth]
        limit = min(2 * limit, LEXICAL_FETCH_MAX)


def hybrid_search(reader: IndexReader, query: str, k: int, *, vector: Callable[[int], Hits],
                  lexical: Callable[[str, int], Hits], mode: str = DEFAULT_MODE,
                  lexical_weight: float | None = None, filter: ItemFilter | None = None,
                  exclude: Iterable[str] = ()) -> list[Hit]:
    """Top ``k`` for a text query.

    ``vector(n)``: the top n of the vector search (filter, removed and excluded items already applied);
    ``lexical(query, n)``: the top n keyword matches among live items. ``exclude`` must hold the removed items too:
    keyword matches are held to it and to ``filter`` here.
    """
    w = check_mode(mode, lexical_weight)
    if mode == "vector":
        return [Hit(i, s, [VECTOR]) for i, s in vector(k)]
    exclude = set(exclude)
    depth = min(max(k, MIN_DEPTH), MAX_DEPTH)
    vec = [i for i, _ in vector(depth)]
    found, lex = keyword_matches(reader, query, depth, lexical, filter, exclude)
    if mode == "hybrid" and lex and found[lex[0]] > 0:
        # Fusion rewards agreement: a weak keyword match (one common word of the query) that the vectors also
        # found would outrank the best keyword match the vectors missed ("leopard print": the one article named
        # "Leopard tights" below dozens of prints). Only matches near the best one take part.
        lex = [i for i in lex if found[i] >= LEXICAL_CUT * found[lex[0]]]
    # A code (a SKU, a product number: one word with a digit) means that item, not its neighbours in meaning: its
    # keyword matches go first, as in lexical mode, and the vectors only fill the rest.
    keywords_first = mode == "lexical" or (bool(lex) and looks_like_code(query))
    weights = {LEXICAL: 1.0, VECTOR: 0.0} if keywords_first else {LEXICAL: w, VECTOR: 1.0 - w}
    fused = rrf({LEXICAL: lex, VECTOR: vec}, weights)
    q = query.strip()
    if q in reader and reader.keep([q], filter, exclude):
        rest = [h for h in fused if h.item_id != q]
        first = Hit(q, max([1.0, *(h.score for h in rest[:1])]), [ID])
        fused = [first, *rest]
    return [Hit(h.item_id, round(h.score, 6), h.sources) for h in fused[:k]]
