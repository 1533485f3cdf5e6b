"""A shopper who arrived after training is ranked with statistics that count their own earlier events, as training
counts every shopper's: the per-request overlay of :func:`recsys.ranking.context.make_context` equals statistics
fitted with that shopper in them, and nothing changes for a shopper the statistics already count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.ranking.context import make_context
from recsys.ranking.history import History
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats

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
    for name in ("pop", "users", "first_ts", "trend7", "trend30"):
        np.testing.assert_allclose(got[name], want[name], err_msg=name)
    assert got["users"][1] == stats.users[1]  # item 1 again: the statistics already count "a" for it


def test_counted_users_survive_save_and_load(tmp_path: Path) -> None:
    stats = ItemStats.fit(IDS, _others())
    stats.save(tmp_path)
    back = ItemStats.load(tmp_path)
    assert back.counted_users == {"a", "b"} and back.uncounted_from("new") == -np.inf
    (tmp_path / "stats_users.txt").unlink()  # an artifact from before: no overlay, as then
    assert ItemStats.load(tmp_path).uncounted_from("new") == np.inf
