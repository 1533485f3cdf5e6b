"""``recsys evaluate --test-events FILE --format events``: a shop's withheld shoppers in its own events format (audit
evalown, defect 1), and intervals over too few users (defect 3).

The file is read by ``recsys import events``'s own code, so its client ids are the ones an import derives (a rerun,
or a later import of the file, stores nothing twice), every event type stays history, and the targets follow the
protocol the stored split picks for the shop (``auto``: the last purchase day when there are purchases).
"""

from __future__ import annotations

import gzip
import json
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import recsys.jobs
from recsys.config import Settings
from recsys.errors import ValidationFailed
from recsys.evaluation import evaluate_test_events, read_test_events, run_evaluation, temporal_split
from recsys.evaluation.experiment import paired_intervals
from recsys.evaluation.runner import protocol_for_test_events
from recsys.jobs import Jobs
from recsys.store import Event, Store, User
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.queries import evaluation_users, events_frame, mark_evaluation_users

ITEMS = [f"i{n}" for n in range(8)]
STORED = """user_id,item_id,type,timestamp,value
s1,i0,view,2024-02-01T10:00:00,
s1,i1,purchase,2024-02-02T10:00:00,20
s1,i3,purchase,2024-02-09T10:00:00,30
s2,i2,view,2024-02-03T10:00:00,
s2,i6,add_to_cart,2024-02-03T10:01:00,
s2,i6,purchase,2024-02-10T10:00:00,10
"""
COLUMNS = ["user_id", "item_id", "type", "timestamp", "value", "event_id"]
WITHHELD = [  # w1: two identical views, a cart, a purchase, then two purchases (and a view) on its last purchase day
    ("w1", "i0", "view", "2024-03-01T10:00:00", None, None),
    ("w1", "i0", "view", "2024-03-01T10:00:00", None, None),
    ("w1", "i1", "add_to_cart", "2024-03-01T11:00:00", None, None),
    ("w1", "i1", "purchase", "2024-03-02T09:00:00", 20.0, None),
    ("w1", "i2", "view", "2024-03-05T08:00:00", None, None),
    ("w1", "i4", "view", "2024-03-07T08:00:00", None, None),
    ("w1", "i3", "purchase", "2024-03-07T09:00:00", 30.0, None),
    ("w1", "i5", "purchase", "2024-03-07T10:00:00", 30.0, None),
    ("w2", "i2", "view", "2024-03-03T10:00:00", None, None),
    ("w2", "i6", "add_to_cart", "2024-03-03T10:05:00", None, "cart-7"),  # a client id of its own
    ("w2", "nope", "view", "2024-03-03T10:06:00", None, None),  # an item the store does not know
    ("w2", "i6", "purchase", "2024-03-04T12:00:00", 10.0, None),
]
HISTORY_EVENTS = 7  # w1: 5 before 2024-03-07; w2: 2 before 2024-03-04 (the unknown item's view dropped)


def _write(path: Path, rows: list[tuple[Any, ...]] = WITHHELD) -> Path:
    """The withheld shoppers as ``recsys import events`` reads them, in the format ``path``'s name says."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    name = path.name
    if name.endswith(".parquet"):
        frame.astype({"value": "float64"}).to_parquet(path)
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps({k: v for k, v in zip(COLUMNS, r, strict=True) if v is not None}) + "\n"
                                for r in rows))
    else:
        text = frame.to_csv(index=False)
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    return path


def _shop(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A tiny shop: eight items, two stored shoppers with views, carts and purchases."""
    (tmp_path / "items.csv").write_text("item_id,title\n" + "".join(f"{i},Item {i}\n" for i in ITEMS))
    (tmp_path / "stored.csv").write_text(STORED)
    run_import(store, "items", tmp_path / "items.csv", settings=settings)
    run_import(store, "events", tmp_path / "stored.csv", settings=settings)


def _stored_ids(store: Store) -> set[tuple[str, str]]:
    with store.session() as s:
        rows = s.execute(select(User.external_id, Event.client_event_id).join(User, User.id == Event.user_id))
        return {(str(u), str(c)) for u, c in rows}


def _replay(store: Store, records: Any) -> Any:
    """The live ingestion path, users marked as evaluation users (what ``Jobs._replay`` does)."""
    out = ingest_events(store, records)
    mark_evaluation_users(store, {str(r["user_id"]) for r in records}, "withheld")
    return out


@pytest.mark.parametrize("name", ["withheld.csv", "withheld.csv.gz", "withheld.jsonl", "withheld.parquet"])
def test_the_file_is_read_as_an_import_reads_it(name: str, store: Store, settings: Settings,
                                                tmp_path: Path) -> None:
    """Every type kept, in file order, with the client ids an import of the same file stores."""
    (tmp_path / "items.csv").write_text("item_id,title\n" + "".join(f"{i},Item {i}\n" for i in ITEMS))
    run_import(store, "items", tmp_path / "items.csv", settings=settings)
    f = _write(tmp_path / name)
    test = read_test_events(f, "events")
    assert test["type"].tolist() == [r[2] for r in WITHHELD]  # views and carts too, not only purchases
    assert test["ts"].tolist() == [pd.Timestamp(r[3]) for r in WITHHELD]
    assert test["client_event_id"].is_unique and "cart-7" in set(test["client_event_id"])
    run_import(store, "events", f, settings=settings)
    known = test[test["item_id"] != "nope"]
    assert set(zip(known["user_id"], known["client_event_id"], strict=True)) == _stored_ids(store)


def test_withheld_shoppers_are_cut_by_purchase_day_and_replayed_once(store: Store, settings: Settings,
                                                                     tmp_path: Path) -> None:
    _shop(store, settings, tmp_path)
    f = _write(tmp_path / "withheld.csv")
    seen: dict[str, Any] = {}
    sent: list[Any] = []

    def make_ours(split: Any) -> Any:
        seen["split"] = split
        return lambda user, history, k: ["i3", "i5", "i6"]

    def replay(records: Any) -> Any:
        sent.extend(records)
        return _replay(store, records)

    def run() -> dict[str, Any]:
        with store.session() as s:
            stored = events_frame(s)
        return evaluate_test_events(f, "events", store_events=stored, replay=replay, make_ours=make_ours,
                                    item_ids=ITEMS, vectors=None, k=3, known_users={"s1", "s2"})

    res = run()
    split = seen["split"]
    assert res["protocol"] == "last_day" and res["split"]["target_types"] == ["purchase"]
    assert res["source"] == "test_events:events" and res["split"]["dropped_unknown_items"] == 1
    assert res["users"] == 2 and split.targets == {"w1": ["i3", "i5"], "w2": ["i6"]}
    assert split.target_time == {"w1": pd.Timestamp("2024-03-07"), "w2": pd.Timestamp("2024-03-04")}
    assert split.histories["w1"]["type"].tolist() == ["view", "view", "add_to_cart", "purchase", "view"]
    assert sorted({r["type"] for r in sent}) == ["add_to_cart", "purchase", "view"]
    assert res["replayed"] == {"stored": HISTORY_EVENTS} and res["metrics"]["recall"] == pytest.approx(1.0)
    with store.session() as s:
        assert evaluation_users(s) == {"w1", "w2"}
        count = len(events_frame(s))
    again = run()
    assert again["replayed"] == {"duplicate": HISTORY_EVENTS} and again["metrics"] == res["metrics"]
    with store.session() as s:
        assert len(events_frame(s)) == count
    # the shop imports the file later: the replayed history is already there under the same ids
    imported = run_import(store, "events", f, settings=settings).tables["events"]
    assert (imported.inserted, imported.unchanged, imported.unknown_items) == (4, HISTORY_EVENTS, 1)


def test_a_stored_shopper_in_the_file_is_refused_before_anything_is_stored(store: Store, settings: Settings,
                                                                           tmp_path: Path) -> None:
    _shop(store, settings, tmp_path)
    f = _write(tmp_path / "withheld.csv", [*WITHHELD, ("s1", "i2", "view", "2024-03-09T10:00:00", None, None)])
    with store.session() as s:
        stored = events_frame(s)
    with pytest.raises(ValidationFailed, match="already in the store"):
        evaluate_test_events(f, "events", store_events=stored, replay=partial(_replay, store), make_ours=None,
                             item_ids=ITEMS, vectors=None, k=3, known_users={"s1", "s2"})
    with store.session() as s:
        assert len(events_frame(s)) == len(stored) and not evaluation_users(s)


def test_events_sharing_a_timestamp_keep_their_file_order(tmp_path: Path) -> None:
    """No tiebreak by item id (H&M's figures rely on the file's order within a day, the order of the purchases):
    the history, and what ``content_peer`` takes as the last items, is in file order among equal times."""
    from recsys.evaluation import split_test_events

    same = "2024-03-01T10:00:00"
    rows = [("w1", "i5", "view", same, None, None), ("w1", "i2", "add_to_cart", same, None, None),
            ("w1", "i7", "view", same, None, None), ("w1", "i1", "purchase", "2024-03-02T10:00:00", 9.0, None)]
    test = read_test_events(_write(tmp_path / "same.csv", rows), "events")
    split = split_test_events(test, "last_day", train_events=test.iloc[:0])
    assert split.histories["w1"]["item_id"].tolist() == ["i5", "i2", "i7"]
    shuffled = read_test_events(_write(tmp_path / "other.csv", [rows[2], rows[0], rows[1], rows[3]]), "events")
    again = split_test_events(shuffled, "last_day", train_events=shuffled.iloc[:0])
    assert again.histories["w1"]["item_id"].tolist() == ["i7", "i5", "i2"]


def test_a_repeated_event_id_is_one_event_as_an_import_stores_it(tmp_path: Path) -> None:
    """Two identical rows with one event_id are stored once by an import; kept twice, the repeat was history."""
    row = ("w1", "i5", "view", "2024-03-01T10:00:00", None, "e-1")
    test = read_test_events(_write(tmp_path / "twice.csv", [row, row, ("w1", "i6", "view", "2024-03-01T11:00:00",
                                                                         None, None)]), "events")
    assert test["item_id"].tolist() == ["i5", "i6"]


def _types(*types: str) -> pd.DataFrame:
    return pd.DataFrame({"type": list(types)})


def test_own_events_follow_the_stored_splits_protocol() -> None:
    """``auto`` over the shop's events, the stored ones and the file's: purchase days when there are purchases,
    the last interaction otherwise; ``--protocol`` overrides it; hm and movielens keep their dataset's."""
    assert protocol_for_test_events("events", _types("view", "purchase"), _types("view")) == ("last_day", ("purchase",))
    assert protocol_for_test_events("events", _types("view"), _types("purchase")) == ("last_day", ("purchase",))
    assert protocol_for_test_events("events", _types("view", "add_to_cart"), _types("view", "dislike")) == (
        "last_interaction", ("add_to_cart", "view"))
    assert protocol_for_test_events("events", _types("purchase"), _types(), "movielens")[0] == "last_interaction"
    assert protocol_for_test_events("hm", _types("view"), _types()) == ("last_day", None)
    assert protocol_for_test_events("movielens", _types("purchase"), _types()) == ("last_interaction", None)


class _Served:
    """The read path as ``Jobs.evaluate`` uses it, over a real store: index ids, a ranker without a co-purchase
    space, live ingestion, and ``recommend`` answering a fixed list (recording when it was asked)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self.index = SimpleNamespace(item_ids=ITEMS, generation_id="g1")
        self.ranker = SimpleNamespace(cobuy=None, manifest={}, net=object())
        self.catalogue = SimpleNamespace(ingest_events=partial(ingest_events, store))
        self.asked: dict[str, Any] = {}

    def removed_items(self) -> frozenset[str]:
        return frozenset()

    def refresh(self) -> None:
        pass

    def recommend(self, user: str, k: int, *, now: Any = None, fresh: bool = False) -> list[Any]:
        self.asked[user] = now
        return [SimpleNamespace(item_id=i) for i in ["i3", "i5", "i6"][:k]]


def test_jobs_evaluate_takes_the_events_format(store: Store, settings: Settings, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _shop(store, settings, tmp_path)
    monkeypatch.setattr(recsys.jobs, "vectors_of_index",
                        lambda settings, reader: SimpleNamespace(fused=np.eye(len(ITEMS), dtype=np.float32)))
    served = _Served(settings, store)
    jobs = Jobs(served)  # type: ignore[arg-type]
    res = jobs.evaluate(3, test_events=_write(tmp_path / "withheld.jsonl"), fmt="events")
    assert res["protocol"] == "last_day" and res["users"] == 2 and res["replayed"] == {"stored": HISTORY_EVENTS}
    assert served.asked == {"w1": pd.Timestamp("2024-03-07").to_pydatetime(),
                            "w2": pd.Timestamp("2024-03-04").to_pydatetime()}
    with store.session() as s:
        assert evaluation_users(s) == {"w1", "w2"}  # kept out of the next build's training


@pytest.mark.parametrize("fmt", [None, "csv"])
def test_a_missing_or_unknown_format_names_all_three(fmt: str | None, settings: Settings, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Said before anything is read (this recommender has no index, no store)."""
    from recsys.cli import _register_commands, app, pipeline

    if not any(c.name == "evaluate" for c in app.registered_commands):
        _register_commands()
    f = _write(tmp_path / "withheld.csv")
    jobs = Jobs(SimpleNamespace(settings=settings, store=None))  # type: ignore[arg-type]
    monkeypatch.setattr(pipeline, "_new_recommender", lambda: SimpleNamespace(jobs=jobs))
    res = CliRunner().invoke(app, ["evaluate", "--test-events", str(f), *(["--format", fmt] if fmt else [])])
    assert isinstance(res.exception, ValidationFailed), res.output
    said = res.exception.message
    assert "--test-events needs --format" in said and all(name in said for name in ("hm", "movielens", "events"))
    assert ("got 'csv'" in said) == (fmt == "csv")


def test_no_interval_below_two_users_and_a_note_below_thirty() -> None:
    one = paired_intervals(np.array([1.0]), {"popular": np.array([0.0])})
    assert one["main"] is None and one["rounds"] == 0 and "no interval: 1 evaluated user" in one["note"]
    assert one["differences"]["popular"] == {"difference": 1.0, "ci": None, "share_ahead": None}
    rng = np.random.default_rng(0)
    few = paired_intervals(rng.random(5), {"popular": rng.random(5)}, rounds=200)
    assert len(few["main"]) == 2 and len(few["differences"]["popular"]["ci"]) == 2
    assert "rough intervals: only 5 evaluated users" in few["note"]
    many = paired_intervals(rng.random(30), {"popular": rng.random(30)}, rounds=200)
    assert many["note"] is None and len(many["main"]) == 2


def _one_user_result() -> dict[str, Any]:
    ev = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["a", "b"], "type": ["purchase", "purchase"],
                       "value": [None, None], "ts": pd.to_datetime(["2024-01-01", "2024-01-05"])})
    split = temporal_split(ev, "hm", part=None)
    return run_evaluation(split, {"ours": lambda u, h, k: ["b"], "popular": lambda u, h, k: ["a"]}, k=2)


def test_one_user_has_no_interval_in_json_and_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli import _register_commands, app, pipeline

    if not any(c.name == "evaluate" for c in app.registered_commands):
        _register_commands()
    result = _one_user_result()
    iv = result["intervals"]
    assert result["users"] == 1 and iv["main"] is None and iv["differences"]["popular"]["ci"] is None
    assert iv["note"].startswith("no interval")
    fake = SimpleNamespace(jobs=SimpleNamespace(evaluate=lambda *a, **kw: result))
    monkeypatch.setattr(pipeline, "_new_recommender", lambda: fake)
    out = CliRunner().invoke(app, ["evaluate", "--k", "2"])
    assert out.exit_code == 0, out.output
    assert "ours - popular: +1.0000" in out.stderr and "95% interval" not in out.stderr
    assert "intervals: no interval: 1 evaluated user(s)" in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["intervals"]["main"] is None


def _odd_layout(path: Path) -> Path:
    """The withheld shoppers as a European spreadsheet exports them: ';' between fields, the item column named
    ``sku``, no type column (every row a purchase: only the purchases of WITHHELD)."""
    rows = [r for r in WITHHELD if r[2] == "purchase"]
    lines = ["user_id;sku;timestamp;value"] + [f"{u};{i};{ts};{v}" for u, i, _, ts, v, _ in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_reads_the_file_with_the_imports_words(store: Store, settings: Settings, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--map, --delimiter and --type read a file in the shop's own layout, as `recsys import events` does (audit
    left-alone item: without them such a file was refused, though the import took it)."""
    from recsys.evaluation.own_events import ReadOptions

    f = _odd_layout(tmp_path / "withheld.csv")
    with pytest.raises(Exception, match="user_id|item_id|type"):
        read_test_events(f, "events")
    options = ReadOptions({"item_id": "sku"}, ";", "purchase")
    test = read_test_events(f, "events", options=options)
    assert test["item_id"].tolist() == [r[1] for r in WITHHELD if r[2] == "purchase"]
    assert set(test["type"]) == {"purchase"}
    _shop(store, settings, tmp_path)
    monkeypatch.setattr(recsys.jobs, "vectors_of_index",
                        lambda settings, reader: SimpleNamespace(fused=np.eye(len(ITEMS), dtype=np.float32)))
    served = _Served(settings, store)
    res = Jobs(served).evaluate(3, test_events=f, fmt="events", read_options=options)  # type: ignore[arg-type]
    assert res["users"] == 1 and set(served.asked) == {"w1"}  # w2's one purchase leaves it no history


@pytest.mark.parametrize(("fmt", "test_events", "said"), [
    ("hm", True, "not to --format hm"), ("movielens", True, "not to --format movielens"),
    (None, False, "the stored events need none")])
def test_read_options_that_would_be_ignored_are_refused(fmt: str | None, test_events: bool, said: str,
                                                         settings: Settings, tmp_path: Path) -> None:
    from recsys.evaluation.own_events import ReadOptions

    jobs = Jobs(SimpleNamespace(settings=settings, store=None))  # type: ignore[arg-type]
    f = _odd_layout(tmp_path / "withheld.csv") if test_events else None
    with pytest.raises(ValidationFailed, match=said):
        jobs.evaluate(3, test_events=f, fmt=fmt, read_options=ReadOptions(delimiter=";"))
    with pytest.raises(ValidationFailed, match="apply to --format events"):
        read_test_events(tmp_path / "any.csv", "hm", options=ReadOptions(event_type="purchase"))


@pytest.mark.parametrize(("fmt", "protocol", "test_events", "said"), [
    ("movielens", None, False, "names the dataset of --test-events FILE"),
    ("events", "last_day", False, "names the dataset of --test-events FILE"),
    ("hm", "movielens", True, "cuts withheld shoppers by last_day"),
    ("hm", "last_interaction", True, "cuts withheld shoppers by last_day"),
    ("movielens", "hm", True, "cuts withheld shoppers by last_interaction")])
def test_format_words_that_would_be_ignored_are_refused(fmt: str, protocol: str | None, test_events: bool, said: str,
                                                         settings: Settings, tmp_path: Path) -> None:
    # --format without --test-events evaluated the stored split (for minutes), and --protocol against hm or
    # movielens was dropped for the dataset's own, both without a word; refused before anything is read
    jobs = Jobs(SimpleNamespace(settings=settings, store=None))  # type: ignore[arg-type]
    f = _odd_layout(tmp_path / "withheld.csv") if test_events else None
    with pytest.raises(ValidationFailed, match=said):
        jobs.evaluate(3, test_events=f, fmt=fmt, protocol=protocol)


@pytest.mark.parametrize("k", [0, -1, 1001, 5.0, True])
def test_a_library_call_with_a_k_out_of_range_is_refused_before_any_work(k: object, settings: Settings) -> None:
    # rec.jobs.evaluate(k=0) fitted a ranker for minutes, then ended in a raw ValueError (the CLI checks --k itself)
    jobs = Jobs(SimpleNamespace(settings=settings, store=None))  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="whole number from 1 to 1000"):
        jobs.evaluate(k)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", [None, "auto", "hm", "last_day"])
def test_a_protocol_agreeing_with_the_format_is_taken(protocol: str | None) -> None:
    from recsys.evaluation.splits import refuse_format_words

    refuse_format_words("hm", protocol, "withheld.csv")  # no refusal


def test_the_cli_passes_map_delimiter_and_type(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from recsys.cli import _register_commands, app, pipeline

    if not any(c.name == "evaluate" for c in app.registered_commands):
        _register_commands()
    got: dict[str, Any] = {}
    fake = SimpleNamespace(jobs=SimpleNamespace(
        evaluate=lambda *a, **kw: got.update(kw) or _one_user_result()))
    monkeypatch.setattr(pipeline, "_new_recommender", lambda: fake)
    f = _odd_layout(tmp_path / "withheld.csv")
    out = CliRunner().invoke(app, ["evaluate", "--test-events", str(f), "--format", "events", "--map",
                                   "item_id=sku", "--delimiter", ";", "--type", "purchase", "--json"])
    assert out.exit_code == 0, out.output
    opts = got["read_options"]
    assert (dict(opts.mapping), opts.delimiter, opts.event_type) == ({"item_id": "sku"}, ";", "purchase")
