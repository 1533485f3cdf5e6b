"""The arrival features: each candidate placed among the items sold in the 30 days before now, counted as of now."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.ranking.catalog import ItemTable, SimpleVectors, arrival_numbers
from recsys.ranking.context import make_context
from recsys.ranking.features import arrival_ranks
from recsys.ranking.history import History, histories_by_user
from recsys.ranking.stats import ItemStats
from tests.ranking.fixtures import small_params


def test_arrival_numbers_read_numbers_and_dates() -> None:
    np.testing.assert_array_equal(arrival_numbers(["0108775", "0950001", None, "x"]),
                                  [108775.0, 950001.0, np.nan, np.nan])
    days = arrival_numbers(["1970-01-03", "1970-01-01T12:00:00Z", None])
    np.testing.assert_allclose(days[:2], [2.0, 0.5])
    assert np.isnan(days[2])


def _world() -> tuple[ItemTable, ItemStats]:
    n = 10
    rng = np.random.default_rng(0)
    ids = [f"i{r}" for r in range(n)]
    codes = [{"product_code": f"{100 + r:07d}"} if r < 9 else {} for r in range(n)]  # the last: no code
    items = pd.DataFrame({"item_id": ids, "attributes": codes})
    table = ItemTable.build(SimpleVectors(ids, rng.normal(size=(n, 4)).astype(np.float32)), items,
                            arrival_attribute="product_code")
    day = pd.Timestamp("2024-03-01")
    # items 0-4 sold long ago, 2, 3 and 5 in the last 30 days before day 100, item 7 only after it
    sales = [("a", 0, 0), ("a", 1, 1), ("b", 4, 2), ("b", 2, 80), ("c", 3, 90), ("c", 5, 95), ("d", 7, 120)]
    events = pd.DataFrame({"user_id": [u for u, _, _ in sales], "item_id": [f"i{r}" for _, r, _ in sales],
                           "type": "purchase", "value": None,
                           "ts": [day + pd.Timedelta(days=d) for _, _, d in sales]})
    hist = histories_by_user(events, table)
    return table, ItemStats.fit(table.ids, hist, 20)


def test_arrival_rank_counts_only_the_window_before_now() -> None:
    table, stats = _world()
    h = History.empty()
    start = (pd.Timestamp("2024-03-01") - pd.Timestamp(0)).total_seconds() / 86400.0
    ctx = make_context(h, start + 100.0, stats, small_params())
    rows = np.arange(table.n)
    rank, known, beyond = arrival_ranks(ctx, table, rows)
    sold = np.array([102.0, 103.0, 105.0])  # codes of items 2, 3, 5: item 7's later sale is not counted
    want = np.searchsorted(sold, 100.0 + rows, side="left") / len(sold)
    np.testing.assert_allclose(rank[known], want[known])
    assert known.tolist() == [True] * 9 + [False]
    assert beyond.tolist() == [False] * 6 + [True] * 3 + [False]  # codes 106-108: past every item sold by then
    # a day later than item 7's sale it is sold, so nothing below it lies beyond
    late = arrival_ranks(make_context(h, start + 121.0, stats, small_params()), table, rows)
    assert late[2].tolist() == [False] * 8 + [True, False]


def test_no_arrival_attribute_gives_unknown() -> None:
    table, stats = _world()
    off = ItemTable.build(SimpleVectors(table.ids, table.fused), None)
    ctx = make_context(History.empty(), 1e6, stats, small_params())
    rank, known, beyond = arrival_ranks(ctx, off, np.arange(off.n))
    assert not known.any() and not beyond.any() and not rank.any()
