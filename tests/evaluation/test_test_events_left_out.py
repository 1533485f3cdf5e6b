"""``--test-events``: every user of the file is evaluated or counted with the reason, and said in a warning.

- A user's target is cut over all their events in the file: a last interaction (MovieLens) or a last day (H&M) on an
  item unknown to the store is not replaced by an earlier event, the user is counted in ``users_unservable``.
- A user with too short a history is counted in ``users_too_short`` (with ``min_history``).
- A MovieLens file with another separator is refused with the layout u.data has."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from recsys.errors import ImportFailed
from recsys.evaluation import evaluate_test_events, read_test_events, split_test_events

STORE = pd.DataFrame({"user_id": ["s1", "s1"], "item_id": ["1", "2"], "type": ["rating", "rating"],
                      "value": [4.0, 5.0], "ts": pd.to_datetime(["1997-01-01", "1997-01-02"])})
KNOWN = {"1", "2", "3", "4"}


def _movielens(tmp_path: Path, rows: list[tuple[int, str, int]]) -> pd.DataFrame:
    p = tmp_path / "u.data"
    p.write_text("".join(f"{u}\t{i}\t4\t{880000000 + t}\n" for u, i, t in rows))
    return read_test_events(p, "movielens")


def test_an_unknown_last_interaction_is_not_replaced_by_an_earlier_one(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    test = _movielens(tmp_path, [
        (5000, "1", 1), (5000, "2", 2), (5000, "99999", 3),   # last rating on an unknown item: not evaluated
        (5001, "99999", 1), (5001, "1", 2), (5001, "3", 3),   # an unknown item in the history: dropped from it
    ])
    with caplog.at_level(logging.WARNING, logger="recsys.evaluation.splits"):
        s = split_test_events(test, "last_interaction", train_events=STORE, known_items=KNOWN, items=KNOWN)
    assert s.users == ["5001"] and s.targets == {"5001": ["3"]}
    assert s.histories["5001"]["item_id"].tolist() == ["1"]
    assert s.info["users_unservable"] == 1 and s.info["dropped_unknown_items"] == 2
    assert sorted(s.train["item_id"]) == ["1", "1", "2"]  # the store's events and 5001's history only
    said = [r.getMessage() for r in caplog.records]
    assert any("1 user(s) not evaluated: every target" in m and "unknown to the store" in m for m in said), said


def test_an_unknown_last_day_is_not_replaced_by_an_earlier_one(tmp_path: Path) -> None:
    p = tmp_path / "transactions.csv"
    p.write_text("t_dat,customer_id,article_id,price,sales_channel_id\n"
                 "2020-01-01,c1,0100000001,0.01,1\n"
                 "2020-01-02,c1,0100000002,0.01,1\n"
                 "2020-01-03,c1,0999999999,0.01,1\n"     # c1's last day: only an unknown article
                 "2020-01-01,c2,0100000001,0.01,1\n"
                 "2020-01-02,c2,0999999999,0.01,1\n"
                 "2020-01-02,c2,0100000003,0.01,1\n"     # c2's last day: the known article is the target
                 "2020-01-01,c3,0999999999,0.01,1\n"
                 "2020-01-02,c3,0100000002,0.01,1\n"
                 "2020-01-05,c3,0100000003,0.01,1\n")
    known = {"0100000001", "0100000002", "0100000003"}
    s = split_test_events(read_test_events(p, "hm"), "last_day", train_events=STORE.iloc[:0], known_items=known)
    assert s.users == ["c2", "c3"] and s.targets == {"c2": ["0100000003"], "c3": ["0100000003"]}
    assert s.target_time["c3"] == pd.Timestamp("2020-01-05")
    assert s.histories["c3"]["item_id"].tolist() == ["0100000002"]
    assert s.info["users_unservable"] == 1 and s.info["targets_unservable"] == 1  # c1; c2's unknown target
    assert s.info["dropped_unknown_items"] == 3


def test_users_with_too_short_a_history_are_counted_and_said(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "u.data"
    p.write_text("7\t1\t4\t880000001\n7\t2\t5\t880000002\n"          # evaluated
                 "8\t3\t4\t880000001\n9\t4\t4\t880000001\n")          # one rating each: too short
    with caplog.at_level(logging.WARNING, logger="recsys.evaluation.splits"):
        res = evaluate_test_events(p, "movielens", store_events=STORE, replay=None, make_ours=None,
                                   item_ids=sorted(KNOWN), vectors=None, k=3)
    assert res["users"] == 1 and res["users_too_short"] == 2
    assert res["split"]["users_too_short"] == 2 and res["split"]["min_history"] == 1
    assert res["split"]["users_unservable"] == 0
    said = [r.getMessage() for r in caplog.records]
    assert any("2 user(s) not evaluated: too short a history (each needs at least 1 event(s) before their last "
               "interaction" in m
               for m in said), said
    # the H&M cut: one purchase day only is too short
    split = split_test_events(read_test_events(_hm_one_day(tmp_path), "hm"), "last_day", train_events=STORE.iloc[:0])
    assert split.users == [] and split.info["users_too_short"] == 1


def _hm_one_day(tmp_path: Path) -> Path:
    p = tmp_path / "one_day.csv"
    p.write_text("t_dat,customer_id,article_id,price,sales_channel_id\n"
                 "2020-01-01,c1,0100000001,0.01,1\n2020-01-01,c1,0100000002,0.01,1\n")
    return p


@pytest.mark.parametrize("sep", [",", "::"])
def test_a_movielens_file_with_another_separator_says_the_layout(tmp_path: Path, sep: str) -> None:
    p = tmp_path / "ratings.dat"
    p.write_text(f"1{sep}2{sep}5{sep}978300760\n1{sep}3{sep}4{sep}978300761\n")
    with pytest.raises(ImportFailed, match=r"cannot read test events .*MovieLens u\.data is tab-separated.*user id, "
                                           r"item id, rating, unix seconds"):
        read_test_events(p, "movielens")
