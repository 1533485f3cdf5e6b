"""Split boundaries and leakage on tiny frames with known answers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys.errors import ValidationFailed
from recsys.evaluation.splits import (
    ingest_records,
    read_test_events,
    resolve_protocol,
    split_test_events,
    temporal_split,
)


def frame(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(user, item, type, ts) rows -> an events frame like recsys.store.queries.events_frame."""
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])
    df["value"] = 1.0
    df["ts"] = pd.to_datetime(df["ts"], format="ISO8601")
    return df[["user_id", "item_id", "type", "value", "ts"]]


HM = frame([
    ("u1", "a", "purchase", "2020-01-01 10:00"),
    ("u1", "b", "purchase", "2020-01-02 09:00"),
    ("u1", "c", "purchase", "2020-01-02 09:00"),
    ("u1", "d", "purchase", "2020-01-03 08:00"),
    ("u1", "d", "purchase", "2020-01-03 08:00"),   # same unit twice: one target
    ("u1", "e", "purchase", "2020-01-03 18:00"),
    ("u1", "z", "view", "2020-01-03 07:00"),       # target day, not a target type: dropped
    ("u2", "a", "purchase", "2020-01-05"),          # one day only: no history, not a test user
    ("u2", "f", "purchase", "2020-01-05"),
    ("u3", "b", "purchase", "2020-01-01"),
    ("u3", "a", "purchase", "2020-01-09"),
])


def test_last_day_split_known_answer() -> None:
    s = temporal_split(HM, "hm")
    assert s.protocol == "last_day"
    assert s.users == ["u1", "u3"]
    assert s.targets == {"u1": ["d", "e"], "u3": ["a"]}
    assert s.target_time["u1"] == pd.Timestamp("2020-01-03")
    assert s.histories["u1"]["item_id"].tolist() == ["a", "b", "c"]
    assert s.histories["u3"]["item_id"].tolist() == ["b"]
    train = sorted(zip(s.train["user_id"], s.train["item_id"], strict=True))
    assert train == [("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "a"), ("u2", "f"), ("u3", "b")]


def test_no_leakage_of_targets_or_later_events() -> None:
    s = temporal_split(HM, "auto")
    for u in s.users:
        mine = s.train[s.train["user_id"] == u]
        assert (mine["ts"] < s.target_time[u]).all()
        assert (s.histories[u]["ts"] < s.target_time[u]).all()
    # item e was only ever bought as a target: the training set must not know it
    assert "e" not in s.train_items and "d" not in s.train_items


def test_last_interaction_ties_keep_input_order() -> None:
    ml = frame([
        ("u1", "a", "rating", "2020-01-01 00:00:01"),
        ("u1", "b", "rating", "2020-01-01 00:00:02"),
        ("u1", "c", "rating", "2020-01-01 00:00:02"),   # same second as b, later in the file: the target
        ("u2", "a", "rating", "2020-01-01 00:00:05"),
        ("u3", "c", "rating", "2020-01-02"),
        ("u3", "a", "rating", "2020-01-01"),            # out of order in the input
    ])
    s = temporal_split(ml, "movielens")
    assert s.protocol == "last_interaction"
    assert s.users == ["u1", "u3"]
    assert s.targets == {"u1": ["c"], "u3": ["c"]}
    assert s.histories["u1"]["item_id"].tolist() == ["a", "b"]
    assert s.histories["u3"]["item_id"].tolist() == ["a"]
    assert s.target_time["u1"] == pd.Timestamp("2020-01-01 00:00:02")
    assert len(s.train) == 4 and "c" not in set(s.train[s.train["user_id"] == "u3"]["item_id"])


def test_min_history_max_users_and_catalogue() -> None:
    s = temporal_split(HM, "hm", min_history=2)
    assert s.users == ["u1"]
    assert len(s.train[s.train["user_id"] == "u3"]) == 2    # a non-test user's events all train
    s = temporal_split(HM, "hm", items={"a", "b", "c", "d"})
    assert s.targets["u1"] == ["d"]
    s1 = temporal_split(HM, "hm", max_users=1, seed=3)
    s2 = temporal_split(HM, "hm", max_users=1, seed=3)
    assert s1.users == s2.users and len(s1.users) == 1


def test_protocol_names() -> None:
    assert resolve_protocol("hm") == "last_day"
    assert resolve_protocol("auto", HM) == "last_day"
    assert resolve_protocol("auto", HM.assign(type="rating")) == "last_interaction"
    with pytest.raises(ValidationFailed):
        resolve_protocol("nope")
    with pytest.raises(ValidationFailed):
        temporal_split(HM.drop(columns=["ts"]))


def test_empty_events() -> None:
    s = temporal_split(HM.iloc[:0], "hm")
    assert s.users == [] and len(s) == 0


def _write_hm(path: Path) -> Path:
    path.write_text(
        "t_dat,customer_id,article_id,price,sales_channel_id\n"
        "2020-01-01,c9,0100000001,0.01,1\n"
        "2020-01-01,c9,0100000001,0.01,1\n"
        "2020-01-04,c9,0100000002,0.02,2\n"
        "2020-01-04,c9,0999999999,0.02,2\n"
        "2020-01-02,c8,0100000002,0.02,2\n"
        "2020-01-03,c8,0100000003,0.03,2\n"
        "not-a-date,c8,0100000003,0.03,2\n"
        "2020-01-03,c7,0100000001,0.01,1\n"
    )
    return path


def test_read_hm_test_events(tmp_path: Path) -> None:
    ev = read_test_events(_write_hm(tmp_path / "t.csv"), "hm")
    assert len(ev) == 7   # the bad row is skipped
    assert ev["item_id"].iloc[0] == "0100000001"      # zero padding kept
    assert set(ev["type"]) == {"purchase"}
    assert ev["client_event_id"].iloc[0] != ev["client_event_id"].iloc[1]   # identical rows: two units


def test_split_test_events(tmp_path: Path) -> None:
    ev = read_test_events(_write_hm(tmp_path / "t.csv"), "hm")
    store_events = frame([("s1", "0100000003", "purchase", "2019-12-01")])
    known = {"0100000001", "0100000002", "0100000003"}
    s = split_test_events(ev, "hm", train_events=store_events, known_users={"s1"}, known_items=known)
    assert s.users == ["c8", "c9"]                      # c7 has one day only
    assert s.targets == {"c8": ["0100000003"], "c9": ["0100000002"]}   # unknown item 0999999999 dropped
    assert s.info["dropped_unknown_items"] == 1
    assert len(s.histories["c9"]) == 2
    assert sorted(s.train["user_id"]) == ["c8", "c9", "c9", "s1"]      # store events + histories only
    with pytest.raises(ValidationFailed):
        split_test_events(ev, "hm", train_events=store_events, known_users={"c9"})
    hidden = split_test_events(ev, "hm", train_events=store_events, known_items=known,
                               items=known - {"0100000003"})  # c8's target hidden: c8 has no servable one
    assert hidden.users == ["c9"] and hidden.info["users_unservable"] == 1
    recs = ingest_records(s.histories["c9"])
    assert recs[0]["user_id"] == "c9" and recs[0]["item_id"] == "0100000001"
    assert recs[0]["timestamp"].startswith("2020-01-01") and recs[0]["event_id"].startswith("hm:")


def test_read_movielens_test_events(tmp_path: Path) -> None:
    p = tmp_path / "u.data"
    p.write_text("7\t10\t4\t100\n7\t11\t5\t200\n8\t10\t3\t150\n")
    ev = read_test_events(p, "movielens")
    assert ev["user_id"].tolist() == ["7", "7", "8"]
    assert ev["type"].unique().tolist() == ["rating"] and ev["value"].tolist() == [4.0, 5.0, 3.0]
    s = split_test_events(ev, "movielens", train_events=frame([]))
    assert s.users == ["7"] and s.targets == {"7": ["11"]}


def test_replayed_history_through_ingestion(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    """The histories replay through the live ingestion path; replaying twice stores nothing twice."""
    from recsys.store.events import ingest_events
    from recsys.store.importers.batch import Writer
    from recsys.store.importers.records import ItemRecord
    from recsys.store.importers.report import ImportReport
    from recsys.store.queries import events_frame

    ml = frame([("9", "1", "rating", "2020-01-01"), ("9", "2", "rating", "2020-01-02"),
                ("9", "3", "rating", "2020-01-03")])
    ml["client_event_id"] = ["ml:1:1", "ml:2:2", "ml:3:3"]
    with sqlite_store.session() as s:
        w = Writer(s, ImportReport(source="t"), 100, None)
        for i in ("1", "2", "3"):
            w.item(ItemRecord(external_id=i, title=f"movie {i}"))
        w.flush_items()
    split = split_test_events(ml, "movielens", train_events=frame([]))
    records = ingest_records(split.histories["9"])
    assert [r.status for r in ingest_events(sqlite_store, records)] == ["stored", "stored"]
    assert [r.status for r in ingest_events(sqlite_store, records)] == ["duplicate", "duplicate"]
    with sqlite_store.session() as s:
        stored = events_frame(s)
    assert stored["item_id"].tolist() == ["1", "2"]


def test_targets_outside_the_servable_items_are_counted() -> None:
    """Targets dropped because their item cannot be served (``items``) are counted, and so are the users left with
    none; the eligible users before the part filter are counted too (the empty-part message names them)."""
    s = temporal_split(HM, "hm", items={"a", "b", "c", "d"})
    assert s.targets == {"u1": ["d"], "u3": ["a"]}
    assert s.info["targets_unservable"] == 1 and s.info["users_unservable"] == 0  # u1's "e"
    s = temporal_split(HM, "hm", items={"b", "c", "d", "e"})
    assert s.users == ["u1"] and s.info["users_unservable"] == 1  # u3 bought only "a" on their last day
    assert s.info["targets_unservable"] == 0
    ml = temporal_split(HM.assign(type="rating"), "movielens", items={"a", "b", "c", "d"})
    assert ml.targets == {"u3": ["a"]}  # u1's last rating is "e", u2's is "f" (after "a" in file order): both out
    assert ml.info["targets_unservable"] == 0 and ml.info["users_unservable"] == 2
    assert temporal_split(HM, "hm").info["targets_unservable"] == 0
    assert temporal_split(HM, "hm", part="test", items={"a"}).info["eligible_users"] == 1  # u3, whatever its part


def test_an_unservable_target_never_moves_the_target_day() -> None:
    """A shopper whose last purchase day holds only an item that cannot be served is left out and counted: they are
    not evaluated on an earlier day with a shorter history, and that day's purchase is not made a history event."""
    ev = frame([("u", "a", "purchase", "2024-01-01 10:00"), ("u", "b", "purchase", "2024-01-02 10:00"),
                ("u", "hidden", "purchase", "2024-01-03 10:00"),
                ("w", "a", "purchase", "2024-01-01 10:00"), ("w", "hidden", "purchase", "2024-01-04 10:00"),
                ("w", "b", "purchase", "2024-01-04 11:00"),
                ("v", "a", "purchase", "2024-01-01 09:00"), ("v", "b", "purchase", "2024-01-05 09:00")])
    s = temporal_split(ev, "hm", items={"a", "b"})
    assert s.users == ["v", "w"] and s.targets == {"v": ["b"], "w": ["b"]}
    assert s.target_time["w"] == pd.Timestamp("2024-01-04")  # w's last day, less its hidden item
    assert s.histories["w"]["item_id"].tolist() == ["a"]
    assert s.info["users_unservable"] == 1 and s.info["targets_unservable"] == 1  # u; w's "hidden"
    ml = temporal_split(ev.assign(type="rating"), "movielens", items={"a", "b"})
    assert ml.users == ["v", "w"] and ml.info["users_unservable"] == 1  # u's last rating is "hidden"
    assert ml.histories["w"]["item_id"].tolist() == ["a", "hidden"]


def test_the_cut_a_fitted_space_may_learn_from_ends_at_the_earliest_target() -> None:
    """``earliest_target`` is the ``cobuy_before`` every fit on a split passes (recsys evaluate, bench, notebook):
    the co-purchase space is one matrix, not counted as of each target, so it sees nothing from a target day on."""
    s = temporal_split(HM, "hm")
    assert s.earliest_target == pd.Timestamp("2020-01-03").to_pydatetime()  # u1's target day; u3's is the 9th
    before = s.train_before_targets()
    assert (before["ts"] < pd.Timestamp("2020-01-03")).all() and len(before) < len(s.train)
    assert "2020-01-05" not in set(before["ts"].dt.strftime("%Y-%m-%d"))  # u2 (not evaluated) after the cut
    empty = temporal_split(HM.iloc[:0], "hm")
    assert empty.earliest_target is None and empty.train_before_targets() is empty.train
