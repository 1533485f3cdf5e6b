"""What an import says of files that hold less, or other, than they seem to: an event id a later import gives to
another event, an empty title for a deleted item, a dataset directory without its events (or users) file, a
dataset file whose header lacks a column, and a JSON line that breaks off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from recsys.config import Settings
from recsys.errors import ImportFailed
from recsys.store import Event, Item, Store, User
from recsys.store.importers import run_import
from recsys.store.items import set_flags
from tests.store.fixtures import write_hm, write_movielens

HEADER = "event_id,user_id,item_id,type,timestamp,value\n"


def _events(store: Store) -> list[tuple[str, str, str, str, float | None]]:
    with store.session() as s:
        q = (select(User.external_id, Event.client_event_id, Item.external_id, Event.type, Event.value)
             .join(User, User.id == Event.user_id).join(Item, Item.id == Event.item_id)
             .order_by(User.external_id, Event.client_event_id))
        return [(u, c, i, t, v) for u, c, i, t, v in s.execute(q)]


def _items(store: Store) -> dict[str, tuple[str, float | None, bool]]:
    with store.session() as s:
        return {e: (t, p, bool(d)) for e, t, p, d in s.execute(select(Item.external_id, Item.title, Item.price,
                                                                      Item.deleted))}


def test_an_event_id_stored_for_another_event_is_a_bad_row_naming_it(store: Store, settings: Settings,
                                                                     tmp_path: Path) -> None:
    """Ids restarted per export or day: a later import's other event under a stored id was dropped and counted
    "unchanged" without a word (the same event again still is unchanged, and ids are per user)."""
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,One\ni2,Two\n")
    run_import(store, "items", items, settings=settings)
    day1 = tmp_path / "day1.csv"
    day1.write_text(HEADER + "x-1,u1,i1,rating,2024-02-01,4\nx-2,u1,i1,view,2024-02-01T10:00:00,\n")
    run_import(store, "events", day1, settings=settings)
    day2 = tmp_path / "day2.csv"
    day2.write_text(HEADER + "x-1,u1,i2,purchase,2024-02-03,30\n"   # another event under x-1
                             "x-2,u1,i1,view,2024-02-01T10:00:00,\n"  # the same event again
                             "x-1,u2,i2,purchase,2024-02-03,30\n"     # another user's x-1
                             "x-3,u1,i2,rating,2024-02-01,5\n")
    for attempt in range(2):  # a re-import says the same and stores nothing more
        report = run_import(store, "events", day2, settings=settings)
        c = report.tables["events"]
        assert (c.read, c.inserted, c.unchanged, c.skipped) == ((4, 2, 1, 1) if attempt == 0 else (4, 0, 3, 1))
        assert [(b.line, b.reason) for b in report.bad_rows] == [
            (2, "event_id 'x-1' is already stored for another event of user 'u1' (a rating of 'i1' at 2024-02-01 "
                "00:00:00, value 4); an import never rewrites a stored event: give each event its own id (this row "
                "was not imported)")]
    assert _events(store) == [("u1", "x-1", "i1", "rating", 4.0), ("u1", "x-2", "i1", "view", None),
                              ("u1", "x-3", "i2", "rating", 5.0), ("u2", "x-1", "i2", "purchase", 30.0)]
    again = run_import(store, "events", day1, settings=settings).tables["events"]
    assert (again.read, again.inserted, again.unchanged, again.skipped) == (2, 0, 2, 0)


def test_stored_events_are_compared_in_batches(store: Store, settings: Settings, tmp_path: Path) -> None:
    """The content check reads the stored events a chunk at a time, never one query per row."""
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,One\ni2,Two\n")
    run_import(store, "items", items, settings=settings)
    f = tmp_path / "events.csv"
    f.write_text(HEADER + "".join(f"e{n},u{n % 7},i1,view,2024-02-01,\n" for n in range(1200)))
    run_import(store, "events", f, settings=settings)
    f.write_text(HEADER + "".join(f"e{n},u{n % 7},i{1 + (n % 50 == 0)},view,2024-02-01,\n" for n in range(1200)))
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "events" in statement:
            reads.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        report = run_import(store, "events", f, settings=settings)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    c = report.tables["events"]
    assert (c.unchanged, c.skipped) == (1200 - 24, 24)
    assert len(reads) <= 6  # 1,200 stored rows: 3 chunks


def test_an_empty_title_keeps_a_deleted_item_deleted_and_titled(store: Store, settings: Settings,
                                                                 tmp_path: Path) -> None:
    """A blank title cell (or a JSON null) is no title: it brought a deleted item back, nameless. On a live item
    it still clears the title, as any empty column clears its field; a title brings a deleted item back."""
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,price\ni1,Hat,1\ni2,Cap,2\ni3,Scarf,3\n")
    run_import(store, "items", items, settings=settings)
    with store.session() as s:
        set_flags(s, ["i1", "i3"], deleted=True)
    feed = tmp_path / "feed.csv"
    feed.write_text("item_id,title,price\ni1,,5\ni2,,6\n")
    report = run_import(store, "items", feed, settings=settings)
    assert report.tables["items"].updated == 2
    lines = tmp_path / "feed.jsonl"
    lines.write_text('{"item_id": "i3", "title": null, "price": 7}\n')
    run_import(store, "items", lines, settings=settings)
    assert _items(store) == {"i1": ("Hat", 5.0, True), "i2": ("", 6.0, False), "i3": ("Scarf", 7.0, True)}
    assert run_import(store, "items", feed, settings=settings).tables["items"].unchanged == 2
    feed.write_text("item_id,title,price\ni1,Hat again,5\n")
    run_import(store, "items", feed, settings=settings)
    assert _items(store)["i1"] == ("Hat again", 5.0, False)


def test_a_dataset_without_its_events_or_users_file_says_so(sqlite_store: Store, settings: Settings,
                                                            tmp_path: Path) -> None:
    """MovieLens without u.data (or u.user), H&M without transactions.csv (or customers.csv): the rest imports,
    and a note names the file that was not there and what was therefore not imported."""
    ml = write_movielens(tmp_path / "ml")
    (ml / "u.data").unlink()
    report = run_import(sqlite_store, "movielens", ml, settings=settings)
    assert "events" not in report.tables and report.tables["items"].inserted == 2
    assert report.notes == [f"{ml / 'u.data'}: not found, so no ratings were imported (only the movies and users); "
                            f"put u.data in {ml} and import again to add them"]
    (ml / "u.user").unlink()
    notes = run_import(sqlite_store, "movielens", ml, settings=settings).notes
    assert [n.split(":")[0] for n in notes] == [str(ml / "u.user"), str(ml / "u.data")]
    assert "(only the movies);" in notes[1]
    hm = write_hm(tmp_path / "hm")
    (hm / "transactions.csv").unlink()
    (hm / "customers.csv").unlink()
    report = run_import(sqlite_store, "hm", hm, settings=settings)
    assert report.tables["items"].inserted == 3 and set(report.tables) == {"items"}
    assert report.notes == [
        f"{hm / 'customers.csv'}: not found, so no customer attributes (age, club membership...) were imported; put "
        f"customers.csv in {hm} and import again to add them",
        f"{hm / 'transactions.csv'}: not found, so no purchases were imported (only the articles); put "
        f"transactions.csv in {hm} and import again to add them"]


def test_a_dataset_file_without_a_column_says_what_its_header_needs(sqlite_store: Store, settings: Settings,
                                                                    tmp_path: Path) -> None:
    """`recsys import hm` takes no --map: its header error told the user to pass one."""
    hm = write_hm(tmp_path / "hm")
    tx = hm / "transactions.csv"
    tx.write_text(tx.read_text().replace("t_dat", "date", 1))
    with pytest.raises(ImportFailed) as exc:
        run_import(sqlite_store, "hm", hm, settings=settings)
    said = str(exc.value)
    assert "--map" not in said and "mapping" not in said
    assert said == (f"{tx}:1: header lacks column(s) ['t_dat']; found ['date', 'customer_id', 'article_id', 'price', "
                    "'sales_channel_id']. Is this the right file? Its first line must name the columns ['t_dat', "
                    "'customer_id', 'article_id'] (in any order, among any others): rename the column in that line. "
                    "Nothing was imported")
    with sqlite_store.session() as s:
        assert s.scalar(select(Item.id).limit(1)) is None


@pytest.mark.parametrize("end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_json_line_that_breaks_off_names_the_column_where_it_ends(sqlite_store: Store, settings: Settings,
                                                                    tmp_path: Path, end: str) -> None:
    """json was given the line with its line break, and pointed at column 1 of the (empty) line after it."""
    good = [f'{{"item_id": "k{n}", "title": "c"}}' for n in range(5)]
    f = tmp_path / "items.jsonl"
    f.write_bytes(end.join([good[0], '{"item_id": "k2", "title": "broken"', *good[1:], ""]).encode())
    report = run_import(sqlite_store, "items", f, settings=settings)
    assert [(b.line, b.reason) for b in report.bad_rows] == [
        (2, "invalid JSON (Expecting ',' delimiter at column 36, where the line ends)")]
