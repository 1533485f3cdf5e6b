"""Event imports stream: identical rows are numbered across the whole file (not per batch) with memory bounded by a
batch, and the report keeps a bounded sample of the skipped rows with their counts. The semantics are pinned on
small files with a batch of two rows, so every repeat and every unknown item falls in another batch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.errors import ImportFailed
from recsys.store import Event, Store, User
from recsys.store.importers import repeats, report, run_import
from recsys.store.importers.hm import purchase_event
from recsys.store.importers.records import derived_event_id
from tests.store.fixtures import write_hm

EVENTS = """user_id,item_id,type,timestamp,value
u1,i1,view,2024-01-01T00:00:00,
u1,i1,view,2024-01-01T00:00:00,
u2,i1,purchase,2024-01-02T00:00:00,3.5
u1,nope,view,2024-01-01T00:00:00,
u1,i1,view,2024-01-01T00:00:00,
u2,i1,purchase,2024-01-02T00:00:00,3.5
u3,i2,click,2024-01-03,
u1,i1,view,2024-01-01T00:00:00,
"""


def _small_batches(settings: Settings) -> Settings:
    return settings.model_copy(update={"store": settings.store.model_copy(update={"batch_size": 2})})


def _stored(store: Store) -> set[tuple[str, str]]:
    with store.session() as s:
        return set(s.execute(select(User.external_id, Event.client_event_id).join(User, User.id == Event.user_id)))


def _items(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\ni1,One\ni2,Two\n")
    run_import(store, "items", f, settings=settings)


def _expected() -> set[tuple[str, str]]:
    view = ("u1", "i1", "view", "None", "2024-01-01T00:00:00")
    buy = ("u2", "i1", "purchase", "3.5", "2024-01-02T00:00:00")
    click = ("u3", "i2", "click", "None", "2024-01-03T00:00:00")
    return ({("u1", derived_event_id("gen", view, n)) for n in (1, 2, 3, 4)}
            | {("u2", derived_event_id("gen", buy, n)) for n in (1, 2)} | {("u3", derived_event_id("gen", click, 1))})


@pytest.mark.parametrize("in_memory", [None, 1], ids=["counted-in-memory", "counted-on-disk"])
def test_identical_event_rows_are_numbered_across_batches(store: Store, settings: Settings, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          in_memory: int | None) -> None:
    if in_memory is not None:  # past this many distinct rows the counts move to a temporary file
        monkeypatch.setattr(repeats, "IN_MEMORY", in_memory)
    settings = _small_batches(settings)
    _items(store, settings, tmp_path)
    f = tmp_path / "events.csv"
    f.write_text(EVENTS)
    first = run_import(store, "events", f, settings=settings)
    c = first.tables["events"]
    assert (c.read, c.inserted, c.unchanged, c.skipped, c.unknown_items) == (8, 7, 0, 1, 1)
    assert [(b.line, b.reason) for b in first.bad_rows] == [(5, "unknown item id 'nope'; import the items first")]
    assert _stored(store) == _expected()
    # the ids of the format these ids have had: a change would store every event of a re-import again
    assert ("u1", "gen:583e09e55abaf5b16a034fb6:4") in _stored(store)
    again = run_import(store, "events", f, settings=settings).tables["events"]
    assert (again.inserted, again.unchanged) == (0, 7)
    assert len(_stored(store)) == 7


@pytest.mark.parametrize("in_memory", [None, 1], ids=["counted-in-memory", "counted-on-disk"])
def test_identical_purchases_get_the_ids_the_test_events_replay_derives(store: Store, settings: Settings,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       in_memory: int | None) -> None:
    """recsys evaluate --test-events numbers H&M rows with its own counter (purchase_event(rec, seen)): an import
    of the same rows must derive the same ids, or replaying withheld shoppers would store their purchases twice."""
    if in_memory is not None:
        monkeypatch.setattr(repeats, "IN_MEMORY", in_memory)
    root = write_hm(tmp_path / "hm")
    rows = ["t_dat,customer_id,article_id,price,sales_channel_id"] + [
        "2018-09-20,c1,0108775015,0.0423,1", "2018-09-21,c2,0110065001,0.0169,2", "2018-09-20,c1,0108775015,0.0423,1",
        "2018-09-22,c2,0108775044,0.0169,2", "2018-09-20,c1,0108775015,0.0423,1", "2018-09-21,c2,0110065001,0.0169,2"]
    (root / "transactions.csv").write_text("\n".join(rows) + "\n")
    report_ = run_import(store, "hm", root, settings=_small_batches(settings))
    assert report_.tables["events"].inserted == 6
    seen: Counter[tuple[str, ...]] = Counter()
    header = rows[0].split(",")
    replayed = {(r.user_id, r.client_event_id) for r in
                (purchase_event(dict(zip(header, line.split(","), strict=True)), seen) for line in rows[1:])}
    assert _stored(store) == replayed and len(replayed) == 6


def test_the_report_keeps_a_bounded_sample_of_skipped_rows(store: Store, settings: Settings, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "MAX_LISTED", 3)
    _items(store, settings, tmp_path)
    f = tmp_path / "events.csv"
    bad = [f"u{i},nope{i},view,2024-01-01" for i in range(10)] + ["u1,i1,view,not a time"] * 3
    f.write_text("user_id,item_id,type,timestamp\n" + "\n".join(bad + ["u1,i1,view,2024-01-01"] * 30) + "\n")
    done = run_import(store, "events", f, settings=settings)
    c = done.tables["events"]
    assert (c.read, c.inserted, c.skipped, c.unknown_items) == (43, 30, 13, 10)
    assert [b.line for b in done.bad_rows] == [12, 13, 14]  # malformed rows at once, unknown items per batch
    assert done.bad_rows_total == 13
    assert done.to_dict()["bad_rows_total"] == 13 and len(done.to_dict()["bad_rows"]) == 3
    assert f"{f}: 13 rows were skipped; the report lists the first 3 (the counts per table cover them all)" \
        in done.notes


def test_a_garbled_file_names_its_first_malformed_row_past_the_sample(store: Store, settings: Settings,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # the first rows name items not imported yet (listed); the malformed ones come after the sample is full
    monkeypatch.setattr(report, "MAX_LISTED", 2)
    _items(store, settings, tmp_path)
    f = tmp_path / "events.csv"
    rows = [f"u{i},nope{i},view,2024-01-01" for i in range(5)] + ["u1,i1,view,garbage"] * 15
    rows += ["u1,i1,view,2024-01-01"] * 5
    f.write_text("user_id,item_id,type,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.raises(ImportFailed, match=r"15 of 25 rows are malformed; first at line 7: unparseable timestamp"):
        run_import(store, "events", f, settings=settings)
