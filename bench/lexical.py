"""Words and vectors: hybrid text search (the default mode) against vector-only search, in one run, on a built store.

Three measurements through ``Recommender.search_text`` (what ``GET /v1/search/text`` calls), each in the default
mode (hybrid) and in ``mode="vector"``:

- rare words: for ``--words`` random words (letters only, 3+ characters) that occur in 3 to 20 article names, the
  query of that word alone; recall@20 of the articles whose name holds it.
- whole names: for ``--names`` random distinct article names, the query of the name; the share of queries with an
  article of that name in the top 5.
- spot checks: the rank of a named article for a query (the issue's "leopard print" -> "Leopard tights 1p").
- broad queries: "<colour> <product type>" for ``--broad`` random pairs with at least 20 articles; precision@20 of
  colour, of type, and of both (attributes ``colour`` / ``product_type``, the H&M importer's).

The store must have the lexical index (migration 0004). The bench never writes to it: a store without the index is
refused unless ``--upgrade`` is given (upgrade a copy, not a home others use). Prints one JSON object.

    BENCH_HM_HOME=/path/to/built/hm/home python bench/lexical.py [--words 200 --names 200 --broad 50 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _homes import exit_if_unusable, require_built  # bench/, on sys.path

from recsys.config import Settings
from recsys.service import Recommender
from recsys.store import Store
from recsys.store.lexical import available
from recsys.store.queries import items_frame

WORD = re.compile(r"[^\W\d_]{3,}")
SPOT_CHECKS = [("leopard print", "leopard tights 1p")]
"""(query, article name): the rank of the first article of that name in the top 200 (None: not there)."""


def _rare_words(titles: dict[str, str], rng: random.Random, n: int) -> list[tuple[str, set[str]]]:
    by_word: dict[str, set[str]] = defaultdict(set)
    for item, title in titles.items():
        for w in set(WORD.findall(title.lower())):
            by_word[w].add(item)
    rare = sorted(w for w, items in by_word.items() if 3 <= len(items) <= 20)
    return [(w, by_word[w]) for w in rng.sample(rare, min(n, len(rare)))]


def _names(titles: dict[str, str], rng: random.Random, n: int) -> list[tuple[str, set[str]]]:
    by_name: dict[str, set[str]] = defaultdict(set)
    for item, title in titles.items():
        if title.strip():
            by_name[title.strip().lower()].add(item)
    names = sorted(by_name)
    return [(name, by_name[name]) for name in rng.sample(names, min(n, len(names)))]


def _broad(attrs: dict[str, dict[str, Any]], rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    pairs: dict[tuple[str, str], int] = defaultdict(int)
    for a in attrs.values():
        if a.get("colour") and a.get("product_type"):
            pairs[(str(a["colour"]), str(a["product_type"]))] += 1
    common = sorted(p for p, c in pairs.items() if c >= 20)
    return [(f"{c} {t}".lower(), c, t) for c, t in rng.sample(common, min(n, len(common)))]


def _measure(search: Callable[[str, int], list[str]], rare: list[tuple[str, set[str]]],
             names: list[tuple[str, set[str]]], broad: list[tuple[str, str, str]],
             attrs: dict[str, dict[str, Any]], titles: dict[str, str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    recall = [len(set(search(w, 20)) & items) / len(items) for w, items in rare]
    top5 = [bool(set(search(name, 5)) & items) for name, items in names]
    colour, ptype, both = [], [], []
    for q, c, t in broad:
        got = [attrs.get(i, {}) for i in search(q, 20)]
        colour.append(sum(a.get("colour") == c for a in got) / 20)
        ptype.append(sum(a.get("product_type") == t for a in got) / 20)
        both.append(sum(a.get("colour") == c and a.get("product_type") == t for a in got) / 20)
    spot = {q: next((r for r, i in enumerate(search(q, 200), 1) if titles.get(i, "").lower() == name), None)
            for q, name in SPOT_CHECKS}
    n = len(rare) + len(names) + len(broad) + len(SPOT_CHECKS)

    def mean(xs: list[float] | list[bool]) -> float | None:
        return round(sum(xs) / len(xs), 4) if xs else None  # None (JSON null): nothing asked, never NaN

    return {"rare_word_recall_at_20": mean(recall), "rare_words_fully_found": mean([r == 1.0 for r in recall]),
            "name_in_top_5": mean(top5), "broad_colour_precision_at_20": mean(colour),
            "broad_type_precision_at_20": mean(ptype), "broad_both_precision_at_20": mean(both),
            "spot_checks_rank": spot, "ms_per_query": round(1000 * (time.perf_counter() - t0) / max(n, 1), 2)}


def nothing_to_measure(args: argparse.Namespace, rare: list[Any], names: list[Any], broad: list[Any]) -> str | None:
    """What the store lacks for a measurement asked for (each would otherwise be a mean of nothing), or None."""
    lacking = [why for asked, got, why in (
        (args.words, rare, "no rare title words: none in 3 to 20 article names"),
        (args.names, names, "no article names"),
        (args.broad, broad, "no colour + type pair with 20+ articles: no colour/product_type attributes"))
        if asked > 0 and not got]
    return "; ".join(lacking) or None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--names", type=int, default=200)
    ap.add_argument("--broad", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--upgrade", action="store_true", help="apply migrations to the store first (writes to it)")
    args = ap.parse_args()
    home = os.environ.get("BENCH_HM_HOME") or os.environ.get("RECSYS_HOME")
    if not home:
        sys.exit("set BENCH_HM_HOME to a built H&M home")
    flag = "BENCH_HM_HOME" if os.environ.get("BENCH_HM_HOME") else "RECSYS_HOME"
    exit_if_unusable(lambda: require_built(Path(home), flag, os.environ.get("RECSYS_DATABASE_URL")))
    settings = Settings(home=Path(home))
    store = Store(settings.db_url)
    if args.upgrade:
        store.upgrade()
    with store.reading() as c:
        if not available(c):
            sys.exit(f"the store at {home} (schema {store.current_revision()}) has no lexical index; run on a copy "
                     "of the home with --upgrade (the bench never writes to a store otherwise)")
    rec = Recommender(settings, store=store)
    with store.session() as s:
        items = items_frame(s)
    served = set(rec.index.item_ids)
    items = items[items["item_id"].astype(str).isin(served)]
    titles = dict(zip(items["item_id"].astype(str), items["title"].fillna("").astype(str), strict=True))
    attrs = dict(zip(items["item_id"].astype(str), items["attributes"], strict=True))
    rng = random.Random(args.seed)
    rare, names, broad = _rare_words(titles, rng, args.words), _names(titles, rng, args.names), \
        _broad(attrs, rng, args.broad)
    lacking = nothing_to_measure(args, rare, names, broad)
    if lacking:
        sys.exit(f"lexical.py: {flag} {home}: nothing to measure in this store ({lacking}); run it on a built H&M "
                 "store")
    rec.search_text("warm up", 5)  # loads the encoder and the index outside the timings

    def default(q: str, k: int) -> list[str]:
        return [h.item_id for h in rec.search_text(q, k)]

    def vector(q: str, k: int) -> list[str]:
        return [h.item_id for h in rec.search_text(q, k, mode="vector")]

    out = {"bench": "lexical", "items": len(titles), "encoder_id": rec.index.manifest.encoder_id,
           "queries": {"rare_words": len(rare), "names": len(names), "broad": len(broad)}, "seed": args.seed,
           "examples": {"rare_words": [w for w, _ in rare[:5]], "names": [n for n, _ in names[:3]],
                        "broad": [q for q, _, _ in broad[:3]]},
           "default_mode": _measure(default, rare, names, broad, attrs, titles),
           "vector_only": _measure(vector, rare, names, broad, attrs, titles)}
    print(json.dumps(out, allow_nan=False))


if __name__ == "__main__":
    main()
