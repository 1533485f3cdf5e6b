"""Two imports of the same new ids at once: both succeed, the last writer's values stay, the counts say what each
did. The second import is made to read the store before the first one writes and to insert after it committed
(the check-then-insert race that failed one import whole with "duplicate key"): deterministic, no timing luck."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from recsys.config import Settings
from recsys.errors import StoreBusy, StoreUnavailable
from recsys.store import Item, ItemMedia, Store, User
from recsys.store.importers import ImportReport, run_import


def _race(db_url: str, settings: Settings, table: str, late: Path, first: Path) -> tuple[ImportReport, ImportReport]:
    """Import ``late`` and ``first`` into one database from two threads with stores of their own: ``late`` reads
    its ids, then waits at its first insert into ``table`` until ``first`` is imported (committed) by the other."""
    source = "items" if table == "items" else "users"
    late_store, first_store = Store(db_url), Store(db_url)
    reports: dict[str, ImportReport] = {}
    errors: list[BaseException] = []

    def imported(name: str, store: Store, path: Path) -> None:
        try:
            reports[name] = run_import(store, source, path, settings=settings)
        except BaseException as e:  # the assertion below names it
            errors.append(e)

    other = threading.Thread(target=imported, args=("first", first_store, first))
    waited: list[bool] = []

    def pause(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not waited and statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()} "):
            waited.append(True)
            other.start()
            other.join(60)

    event.listen(late_store.engine, "before_cursor_execute", pause)
    try:
        imported("late", late_store, late)
    finally:
        late_store.dispose()
        first_store.dispose()
    assert waited and not other.is_alive()
    assert not errors, errors
    return reports["late"], reports["first"]


def _counts(report: ImportReport, table: str) -> tuple[int, int, int]:
    c = report.tables[table]
    return c.inserted, c.updated, c.unchanged


def test_two_imports_of_the_same_new_items_both_succeed(store: Store, db_url: str, settings: Settings,
                                                        tmp_path: Path) -> None:
    late, first = tmp_path / "late.csv", tmp_path / "first.csv"
    late.write_text("item_id,title,price,image\n" + "".join(f"i{i},Late {i},{i}.5,late{i}.jpg\n" for i in range(30)))
    first.write_text("item_id,title,price,image\n"
                     + "".join(f"i{i},First {i},1.0,first{i}.jpg\n" for i in range(15, 45)))
    got_late, got_first = _race(db_url, settings, "items", late, first)
    assert _counts(got_first, "items") == (30, 0, 0)
    assert _counts(got_late, "items") == (15, 15, 0)  # i15..i29 were the other import's by the time it wrote them
    with store.session() as s:
        titles = {e: t for e, t in s.execute(select(Item.external_id, Item.title))}
        images = {e: u for e, u in s.execute(select(Item.external_id, ItemMedia.uri).join(ItemMedia))}
    assert len(titles) == 45
    assert all(titles[f"i{i}"] == f"Late {i}" and images[f"i{i}"].endswith(f"/late{i}.jpg") for i in range(30))
    assert all(titles[f"i{i}"] == f"First {i}" for i in range(30, 45))
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(ItemMedia)) == 45  # the first one's images replaced


def test_the_same_file_imported_twice_at_once_is_unchanged_the_second_time(store: Store, db_url: str,
                                                                             settings: Settings,
                                                                             tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\n" + "".join(f"s{i},Same {i}\n" for i in range(20)))
    got_late, got_first = _race(db_url, settings, "items", f, f)
    assert _counts(got_first, "items") == (20, 0, 0) and _counts(got_late, "items") == (0, 0, 20)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 20


def test_two_imports_of_the_same_new_users_both_succeed(store: Store, db_url: str, settings: Settings,
                                                        tmp_path: Path) -> None:
    late, first = tmp_path / "late.csv", tmp_path / "first.csv"
    late.write_text("user_id,city\n" + "".join(f"u{i},Late\n" for i in range(10)))
    first.write_text("user_id,city\n" + "".join(f"u{i},First\n" for i in range(5, 15)))
    got_late, got_first = _race(db_url, settings, "users", late, first)
    assert _counts(got_first, "users") == (10, 0, 0) and _counts(got_late, "users") == (5, 5, 0)
    with store.session() as s:
        cities = {e: a["city"] for e, a in s.execute(select(User.external_id, User.attributes))}
    assert cities == {f"u{i}": "Late" if i < 10 else "First" for i in range(15)}


def test_free_running_imports_of_the_same_new_ids_both_succeed(store: Store, db_url: str, settings: Settings,
                                                               tmp_path: Path) -> None:
    """As the audit ran it: two imports started together, no pause (the race may or may not be hit)."""
    rows = 2000
    files = [tmp_path / f"feed{f}.csv" for f in (1, 2)]
    for f, path in enumerate(files, start=1):
        path.write_text("item_id,title\n" + "".join(f"r{i},Title {i} from feed {f}\n" for i in range(rows)))
    stores = [Store(db_url), Store(db_url)]
    reports: list[ImportReport] = []
    errors: list[BaseException] = []

    def imported(s: Store, path: Path) -> None:
        try:
            reports.append(run_import(s, "items", path, settings=settings))
        except BaseException as e:  # the assertion below names it
            errors.append(e)

    threads = [threading.Thread(target=imported, args=(s, p)) for s, p in zip(stores, files, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in stores:
        s.dispose()
    assert not errors, errors
    assert sorted(_counts(r, "items")[0] + _counts(r, "items")[1] for r in reports) == [rows, rows]
    assert sum(_counts(r, "items")[0] for r in reports) == rows  # each id inserted once, by one of them
    with store.session() as s:
        titles = set(s.scalars(select(Item.title)))
    assert len(titles) == rows and len({t.rsplit(" ", 1)[1] for t in titles}) == 1  # all one feed's: the last


def test_a_row_another_writer_stored_meanwhile_is_not_blamed_on_the_file(store: Store, settings: Settings,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A unique violation that is still left (whatever the writer) says that another writer changed the same rows
    and that running the import again is safe, not "report it with the file's offending row"."""
    from recsys.store.importers import batch

    f = tmp_path / "items.csv"
    f.write_text("item_id,title\nk1,One\n")
    run_import(store, "items", f, settings=settings)

    def plain_insert(session: Session, records: Any, *_a: Any) -> None:  # as the writer did before it checked
        session.execute(insert(Item), [{"external_id": r.external_id, "title": r.title, "content_hash": "h"}
                                       for r in records])

    monkeypatch.setattr(batch, "upsert_items", plain_insert)
    with pytest.raises(StoreBusy) as ex:
        run_import(store, "items", f, settings=settings)
    assert ex.value.code == "store_busy" and "Please report" not in ex.value.message
    assert ex.value.message.startswith(f"{f}: another writer (an import running at the same time?) changed the "
                                       "same rows while this import ran (")
    assert ex.value.message.endswith("nothing was imported. The file is not at fault: running it again is safe")


def test_an_import_whose_connection_is_killed_says_nothing_was_imported(store: Store, settings: Settings,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection ended under the import (pg_terminate_backend on PostgreSQL, a lost connection on SQLite):
    ``store_down`` saying that nothing was imported, as a full disk does."""
    from recsys.store.importers import batch

    f = tmp_path / "items.csv"
    f.write_text("item_id,title\nk1,One\n")
    written = batch.upsert_items

    def killed(session: Session, *a: Any) -> None:
        written(session, *a)
        if store.dialect == "postgresql":
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(batch, "upsert_items", killed)
    with pytest.raises(StoreUnavailable) as ex:
        run_import(store, "items", f, settings=settings)
    assert ex.value.code == "store_down"
    assert ex.value.message.startswith(f"{f}: nothing was imported: database ") and "unreachable" in ex.value.message
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 0
