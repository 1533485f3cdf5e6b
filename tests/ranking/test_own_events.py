"""A shopper who arrived after training is ranked with statistics that count their own earlier events, as training
counts every shopper's: the per-request overlay of :func:`recsys.ranking.context.make_context` equals statistics
fitted with that shopper in them, and nothing changes for a shopper the statistics already count."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from recsys.ranking.candidates import CandidateGenerator, ExactSearch
from recsys.ranking.catalog import ItemTable, SimpleVectors
from recsys.ranking.context import make_context
from recsys.ranking.history import History
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import PURCHASE, ItemStats

IDS = [f"i{n}" for n in range(8)]


def _history(rows: list[int], ts: list[float]) -> History:
    r = np.array(rows, np.int64)
    return History(r, np.zeros(len(r), np.int64), np.full(len(r), np.nan), np.array(ts, float))


def _others() -> dict[str, History]:
    return {"a": _history([0, 1, 2], [1.0, 2.0, 3.0]), "b": _history([1, 2, 3, 1], [2.0, 4.0, 5.0, 6.0])}


def _fields(stats: ItemStats, h: History, now: float) -> dict[str, np.ndarray]:
    ctx = make_context(h, now, stats, RankingParams())
    return {"pop": ctx.pop, "users": ctx.users, "first_ts": ctx.first_ts, "trend7": ctx.trend7,
            "trend30": ctx.trend30, "cooc": ctx.cooc}


def test_a_newcomers_own_events_count_as_if_the_statistics_had_them() -> None:
    newcomer = _history([5, 6, 5, 2], [3.5, 4.5, 5.5, 6.5])
    without = ItemStats.fit(IDS, _others())
    with_them = ItemStats.fit(IDS, {**_others(), "new": newcomer})
    assert without.uncounted_from("new") == -np.inf and without.uncounted_from("a") > without.end_ts
    now = 10.0
    want = _fields(with_them, newcomer, now)  # a shopper the statistics count: nothing added
    newcomer.uncounted_from = without.uncounted_from("new")
    got = _fields(without, newcomer, now)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], err_msg=name)
    assert got["pop"][5] == 2 and got["users"][5] == 1  # bought twice by one shopper, nobody else
    plain = _history([5, 6, 5, 2], [3.5, 4.5, 5.5, 6.5])  # the old view: their own items look never sold
    assert _fields(without, plain, now)["pop"][5] == 0 and np.isinf(_fields(without, plain, now)["first_ts"][5])


def test_a_counted_shopper_gets_only_their_events_after_the_statistics_end() -> None:
    stats = ItemStats.fit(IDS, _others())
    h = _history([0, 1, 2, 4, 1], [1.0, 2.0, 3.0, 7.0, 8.0])  # "a" with two events after training
    want = _fields(ItemStats.fit(IDS, {**_others(), "a": h}), h, 9.0)
    h.uncounted_from = stats.uncounted_from("a")
    got = _fields(stats, h, 9.0)
    for name in want:  # co-occurrence included: pairs of an old (counted) event with a new one are added
        np.testing.assert_allclose(got[name], want[name], err_msg=name)
    assert got["users"][1] == stats.users[1]  # item 1 again: the statistics already count "a" for it
    plain = _history([0, 1, 2, 4, 1], [1.0, 2.0, 3.0, 7.0, 8.0])  # the statistics alone: no pair with item 4
    assert got["cooc"][4] > _fields(stats, plain, 9.0)["cooc"][4] == 0


def test_an_item_bought_before_now_and_again_at_now_counts_its_buyer_once() -> None:
    newcomer = _history([5, 5], [3.0, 10.0])
    want = _fields(ItemStats.fit(IDS, {**_others(), "new": newcomer}), newcomer, 10.0)
    newcomer.uncounted_from = ItemStats.fit(IDS, _others()).uncounted_from("new")
    got = _fields(ItemStats.fit(IDS, _others()), newcomer, 10.0)
    assert got["users"][5] == want["users"][5] == 1 and got["pop"][5] == want["pop"][5] == 1


def test_popular_and_trending_lists_count_the_shoppers_own_events() -> None:
    """The catalogue-wide lists (kept per statistics window and shared by every request) with a newcomer's own
    events added per request equal the lists of statistics fitted with the newcomer in them, and the shared list
    is left as it was for the next shopper."""
    ids = [f"i{n}" for n in range(40)]
    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 8)).astype(np.float32)
    table = ItemTable.build(SimpleVectors(ids, v))
    others = {f"u{u}": _history(list(rng.choice(40, 4, replace=False)), sorted(rng.uniform(0, 20, 4)))
              for u in range(12)}
    newcomer = _history([39, 38, 39, 37], [14.0, 15.0, 18.0, 19.5])  # items nobody else bought
    p = dataclasses.replace(RankingParams(), trending_days=7.0)
    without, with_them = ItemStats.fit(ids, others), ItemStats.fit(ids, {**others, "new": newcomer})
    now = 21.0
    for k in (3, 10, 40):
        plain = _history([0], [1.0])  # a shopper the statistics count: the shared lists
        gen = CandidateGenerator(table, without, ExactSearch(ids, v), p, np.ones(40, bool))
        shared_pop, shared_trend = gen.popular(make_context(plain, now, without, p), k).copy(), \
            gen.trending(make_context(plain, now, without, p), k).copy()
        newcomer.uncounted_from = without.uncounted_from("new")
        ctx = make_context(newcomer, now, without, p)
        ref = CandidateGenerator(table, with_them, ExactSearch(ids, v), p, np.ones(40, bool))
        newcomer.uncounted_from = np.inf
        want = make_context(newcomer, now, with_them, p)
        np.testing.assert_array_equal(gen.popular(ctx, k), ref.popular(want, k))
        np.testing.assert_array_equal(gen.trending(ctx, k), ref.trending(want, k))
        assert 39 in gen.trending(ctx, k)  # bought twice by the newcomer in the window
        np.testing.assert_array_equal(gen.popular(make_context(plain, now, without, p), k), shared_pop)
        np.testing.assert_array_equal(gen.trending(make_context(plain, now, without, p), k), shared_trend)


def test_counted_users_survive_save_and_load(tmp_path: Path) -> None:
    stats = ItemStats.fit(IDS, _others())
    stats.save(tmp_path)
    back = ItemStats.load(tmp_path)
    assert back.counted_users == {"a", "b"} and back.uncounted_from("new") == -np.inf
    (tmp_path / "stats_users.txt").unlink()  # an artifact from before: no overlay, as then
    assert ItemStats.load(tmp_path).uncounted_from("new") == np.inf


def _bought(rows: list[int], ts: list[float], prices: list[float]) -> History:
    r = np.array(rows, np.int64)
    return History(r, np.full(len(r), PURCHASE, np.int64), np.array(prices, float), np.array(ts, float))


def test_prices_paid_are_counted_as_of_now_with_the_shoppers_own() -> None:
    """An item's price is the mean paid before now: later purchases, other event types and NaN values never count,
    a newcomer's own purchases count as if the statistics had them, and the prices survive save and load."""
    others = {"a": _bought([0, 1, 2], [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]),
              "b": _bought([1, 2, 3, 1], [2.0, 4.0, 5.0, 6.0], [22.0, np.nan, 40.0, 24.0]),
              "v": _history([3, 4], [1.0, 2.0])}  # views: no price, whatever their value
    others["v"].values[:] = 99.0
    stats = ItemStats.fit(IDS, others)
    rows = np.arange(len(IDS))

    def prices(s: ItemStats, h: History, now: float) -> np.ndarray:
        return make_context(h, now, s, RankingParams()).price(rows)

    np.testing.assert_allclose(prices(stats, History.empty(), 5.5), [10, 21, 30, 40, *[np.nan] * 4])
    np.testing.assert_allclose(prices(stats, History.empty(), 4.5), [10, 21, 30, *[np.nan] * 5])  # 40 paid at 5.0
    np.testing.assert_allclose(prices(stats, History.empty(), 99.0), [10, 22, 30, 40, *[np.nan] * 4])
    newcomer = _bought([5, 1, 5], [3.5, 4.5, 5.5], [7.0, 30.0, 9.0])
    want = prices(ItemStats.fit(IDS, {**others, "new": newcomer}), newcomer, 10.0)
    newcomer.uncounted_from = stats.uncounted_from("new")
    np.testing.assert_allclose(prices(stats, newcomer, 10.0), want)
    assert want[5] == 8.0 and np.isclose(want[1], (20 + 22 + 24 + 30) / 4)


def test_prices_survive_save_load_and_a_new_catalogue(tmp_path: Path) -> None:
    stats = ItemStats.fit(IDS, {"a": _bought([0, 1], [1.0, 2.0], [10.0, 20.0])})
    stats.save(tmp_path)
    back = ItemStats.load(tmp_path)
    np.testing.assert_array_equal(back.price_sums_at(5.0)[0], stats.price_sums_at(5.0)[0])
    moved = stats.aligned(["i1", "x", "i0"])
    np.testing.assert_array_equal(moved.price_sums_at(5.0)[0], [20.0, 0.0, 10.0])


def test_a_live_recount_keeps_the_trainings_pairs_and_adds_each_shoppers_own() -> None:
    """``ranking.live_stats_s`` recounts the counts from every stored event but keeps the training's co-occurrence
    pairs: the counts equal statistics fitted with everyone, and a shopper the recount counts still gets their own
    pairs per request (the training's plus their own, as before the recount)."""
    newcomer = _history([5, 6, 5, 2], [3.5, 4.5, 5.5, 6.5])
    later = _history([0, 1, 2, 4, 1], [1.0, 2.0, 3.0, 7.0, 8.0])  # "a", with two events after training
    trained = ItemStats.fit(IDS, _others())
    everyone = {**_others(), "a": later, "new": newcomer}
    live = ItemStats.fit(IDS, everyone).with_pairs_of(trained)
    np.testing.assert_array_equal(live.cooc_col, trained.cooc_col)
    assert live.uncounted("new") == (live.uncounted_from("new"), -np.inf) and live.uncounted_from("new") > 6.5
    assert live.uncounted("a")[1] > trained.end_ts and live.uncounted("a")[1] < live.end_ts
    assert live.aligned(list(reversed(IDS))).pairs_users == trained.counted_users  # a new index keeps it
    for user, h in (("new", newcomer), ("a", later)):
        want = _fields(ItemStats.fit(IDS, {**_others(), user: h}), h, 9.0)  # the pairs: theirs and training's
        full = _fields(ItemStats.fit(IDS, everyone), h, 9.0)
        h.uncounted_from, h.pairs_uncounted_from = live.uncounted(user)
        got = _fields(live, h, 9.0)
        np.testing.assert_allclose(got["cooc"], want["cooc"], err_msg=user)
        for name in ("pop", "users", "first_ts", "trend7", "trend30"):  # the counts: everyone's
            np.testing.assert_allclose(got[name], full[name], err_msg=f"{user} {name}")
        h.uncounted_from, h.pairs_uncounted_from = np.inf, None
    assert _fields(live, newcomer, 9.0)["cooc"][6] < _fields(ItemStats.fit(IDS, everyone), newcomer, 9.0)["cooc"][6]


def test_pairs_of_other_rows_are_refused() -> None:
    import pytest

    trained = ItemStats.fit(IDS, _others())
    with pytest.raises(ValueError, match="other rows"):
        ItemStats.fit(IDS[:-1], _others()).with_pairs_of(trained)


def test_a_live_recount_over_statistics_without_counted_users_recounts_the_pairs() -> None:
    """Statistics saved before they recorded whom they count cannot say whose pairs to add per request: a live
    recount over them counts everyone's pairs itself, so a newcomer keeps theirs."""
    newcomer = _history([5, 6, 5, 2], [3.5, 4.5, 5.5, 6.5])
    old = dataclasses.replace(ItemStats.fit(IDS, _others()), counted_users=None)
    everyone = ItemStats.fit(IDS, {**_others(), "new": newcomer})
    live = everyone.with_pairs_of(old)
    newcomer.uncounted_from, newcomer.pairs_uncounted_from = live.uncounted("new")
    np.testing.assert_allclose(_fields(live, newcomer, 9.0)["cooc"], _fields(everyone, newcomer, 9.0)["cooc"])
