"""The result cache's bounds: entries and bytes, the bytes estimate holding the real memory of cached results."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

from recsys.config import Settings
from recsys.lru import LRU
from recsys.service import Recommender, ScoredItem
from recsys.serving.results import result_list_bytes
from recsys.store import Store


def _results(n: int, explain: bool, rng: random.Random) -> list[ScoredItem]:
    out = []
    for _ in range(n):
        expl = {"because_of": f"item-{rng.randrange(10**9)}", "text": rng.random(), "image": rng.random(),
                "index_generation": "20260101T000000000000Z-abcdef", "ranker": "ranker-20260101-000000"}
        out.append(ScoredItem(f"item-{rng.randrange(10**9)}", rng.random(), ["content", "popular"],
                              expl if explain else None))
    return out


def test_bounded_by_entries_and_bytes() -> None:
    cache: LRU[bytes] = LRU(3, max_bytes=100, weigh=len)
    for key in "abc":
        cache.put(key, b"x" * 30)
    assert len(cache) == 3 and cache.bytes == 90
    cache.put("d", b"x" * 30)  # over both bounds: the least recently used goes
    assert cache.get("a") is None and cache.get("d") is not None and cache.bytes == 90
    cache.put("e", b"x" * 70)  # room is made by bytes, not only by count
    assert cache.bytes == 100 and cache.get("e") is not None and list(cache._data) == ["d", "e"]
    cache.put("huge", b"x" * 101)  # heavier than the whole cache: not kept, nothing evicted for it
    assert cache.get("huge") is None and cache.get("e") is not None
    cache.put("e", b"x")  # replacing a value re-weighs it
    assert cache.bytes == 31


def test_many_long_lists_stay_within_the_memory_bound() -> None:
    """The attack: 1,000-result lists for random user ids. What the cache holds stays under its bound, measured."""
    rng = random.Random(0)
    bound = 2 * 2**20
    cache: LRU[list[ScoredItem]] = LRU(20_000, max_bytes=bound, weigh=result_list_bytes)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(16):
            cache.put(f"user-{n}", _results(1000, n % 2 == 0, rng))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0 < cache.bytes <= bound and len(cache) < 16
    assert held <= bound * 1.1, (held, cache.bytes)


def test_service_cache_has_a_byte_bound(sqlite_store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.ranking.result_cache_mb = 3
    rec = Recommender(settings, sqlite_store)
    assert rec._results.max_bytes == 3 * 2**20 and rec._results.weigh is result_list_bytes
