"""An event file that gives one client `event_id` to two different events of a user: the second row is listed as
skipped with its line and the line that used the id first, not counted "unchanged" without a word. An identical
repeat of a row with an id is still stored once (counted unchanged), identical rows without an id stay separate
occurrences, and ids are per user. Pinned with a batch of two rows, so the uses fall in other batches."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.store import Event, Item, Store, User
from recsys.store.importers import repeats, run_import

EVENTS = """user_id,item_id,type,timestamp,event_id
u7,i1,view,2026-01-01,c1
u7,i2,purchase,2026-01-02,c1
u8,i2,purchase,2026-01-02,c1
u7,i1,view,2026-01-01,c1
u7,i2,view,2026-01-03,
u7,i2,view,2026-01-03,
u7,i1,click,2026-01-01,c1
"""


def _stored(store: Store) -> list[tuple[str, str, str]]:
    with store.session() as s:
        q = (select(User.external_id, Item.external_id, Event.type).join(User, User.id == Event.user_id)
             .join(Item, Item.id == Event.item_id).order_by(User.external_id, Event.ts, Item.external_id))
        return [(u, i, t) for u, i, t in s.execute(q)]


@pytest.mark.parametrize("in_memory", [None, 1], ids=["kept-in-memory", "kept-on-disk"])
def test_a_second_event_under_one_id_is_a_skipped_row_naming_the_first(store: Store, settings: Settings,
                                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       in_memory: int | None) -> None:
    if in_memory is not None:  # past this many ids their first uses move to a temporary file
        monkeypatch.setattr(repeats, "IN_MEMORY", in_memory)
    settings = settings.model_copy(update={"store": settings.store.model_copy(update={"batch_size": 2})})
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,One\ni2,Two\n")
    run_import(store, "items", items, settings=settings)
    f = tmp_path / "events.csv"
    f.write_text(EVENTS)
    for attempt in range(2):  # a re-import says the same of the clashes and stores nothing
        report = run_import(store, "events", f, settings=settings)
        c = report.tables["events"]
        assert (c.read, c.inserted, c.unchanged, c.skipped) == ((7, 4, 1, 2) if attempt == 0 else (7, 0, 5, 2))
        assert [(b.line, b.reason) for b in report.bad_rows] == [
            (3, "event_id 'c1' is already used at line 2 for another event of user 'u7'; give each event its own "
                "id (this row was not imported)"),
            (8, "event_id 'c1' is already used at line 2 for another event of user 'u7'; give each event its own "
                "id (this row was not imported)"),
        ]
        assert _stored(store) == [("u7", "i1", "view"), ("u7", "i2", "view"), ("u7", "i2", "view"),
                                  ("u8", "i2", "purchase")]
