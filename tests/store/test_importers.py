from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from recsys.config import Settings
from recsys.errors import ImportFailed
from recsys.store import Item, ItemMedia, Store
from recsys.store.importers import run_import
from recsys.store.queries import events_frame, stats
from tests.store.fixtures import write_hm, write_movielens


def _stats(store: Store) -> dict:
    with store.session() as s:
        return stats(s)


def test_hm_import_counts_and_is_idempotent(store: Store, settings: Settings, tmp_path: Path) -> None:
    root = write_hm(tmp_path / "hm")
    run_import(store, "hm", root, settings=settings)
    expected = {"items": 3, "items_with_image": 2, "items_with_broken_image": 0, "users": 2, "events": 4,
                "events_by_type": {"purchase": 4}, "evaluation_replays": {"users": 0, "events": 0}}
    assert _stats(store) == expected
    report = run_import(store, "hm", root, settings=settings)
    assert _stats(store) == expected
    assert report.tables["events"].inserted == 0 and report.tables["events"].unchanged == 4
    assert report.tables["items"].unchanged == 3
    with store.session() as s:
        ids = set(s.scalars(select(Item.external_id)))
        assert "0108775015" in ids  # leading zeros kept
        item = s.scalar(select(Item).where(Item.external_id == "0108775015"))
        # no price from the transactions: a statistic of the events, computed as of "now" by the ranker instead
        assert item is not None and item.price is None
        assert item.attributes["colour"] == "Black" and item.category == "Vest top"


def test_identical_purchase_rows_are_separate_events(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    with store.session() as s:
        df = events_frame(s, users=["c1"])
    assert len(df) == 2 and set(df.item_id) == {"0108775015"}


def test_changed_item_is_updated(store: Store, settings: Settings, tmp_path: Path) -> None:
    root = write_hm(tmp_path / "hm")
    run_import(store, "hm", root, settings=settings)
    text = (root / "articles.csv").read_text().replace("Strap top,253,Vest top", "Strappy top,253,Vest top", 1)
    (root / "articles.csv").write_text(text)
    report = run_import(store, "hm", root, settings=settings)
    assert report.tables["items"].updated == 1 and report.tables["items"].unchanged == 2
    with store.session() as s:
        assert s.scalar(select(Item.title).where(Item.external_id == "0108775015")) == "Strappy top"


def test_a_partial_item_file_updates_only_its_fields(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A price feed (item_id, price) must not blank the titles, photos and attributes already stored; a column
    that is there but empty does clear its field."""
    (tmp_path / "a.jpg").write_bytes(b"not checked here")
    full = tmp_path / "items.csv"
    full.write_text("item_id,title,description,category,price,image,colour\n"
                    "s1,Red dress,Silk,dress,10,a.jpg,red\ns2,Blue shirt,Cotton,shirt,20,,blue\n")
    run_import(store, "items", full, settings=settings)
    feed = tmp_path / "prices.csv"
    feed.write_text("item_id,price\ns1,12.5\ns2,20\ns3,7\n")
    report = run_import(store, "items", feed, settings=settings)
    assert report.tables["items"].updated == 1 and report.tables["items"].unchanged == 1
    assert report.tables["items"].inserted == 1  # a new item gets what the record gives
    with store.session() as s:
        s1 = s.scalar(select(Item).where(Item.external_id == "s1"))
        assert s1 is not None and (s1.title, s1.description, s1.category, s1.price) == ("Red dress", "Silk", "dress",
                                                                                          12.5)
        assert s1.attributes == {"colour": "red"}
        media = s.execute(select(ItemMedia.uri).where(ItemMedia.item_id == s1.id)).scalars().all()
        assert len(media) == 1 and media[0].endswith("a.jpg")
    cleared = tmp_path / "clear.csv"
    cleared.write_text("item_id,description\ns1,\n")
    run_import(store, "items", cleared, settings=settings)
    with store.session() as s:
        s1 = s.scalar(select(Item).where(Item.external_id == "s1"))
        assert s1 is not None and s1.description == "" and s1.title == "Red dress"


def test_movielens_import(store: Store, settings: Settings, tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    run_import(store, "movielens", root, settings=settings)
    run_import(store, "movielens", root, settings=settings)
    st = _stats(store)
    assert st == {"items": 2, "items_with_image": 1, "items_with_broken_image": 0, "users": 2, "events": 3,
                  "events_by_type": {"rating": 3}, "evaluation_replays": {"users": 0, "events": 0}}
    with store.session() as s:
        toy = s.scalar(select(Item).where(Item.external_id == "1"))
        assert toy is not None
        assert toy.description == "Toys come alive." and toy.category == "Comedy"
        assert toy.attributes["year"] == 1995
        assert s.scalar(select(Item.title).where(Item.external_id == "2")) == "Caf\xe9 Film (1996)"


def test_generic_formats_and_mapping(store: Store, settings: Settings, tmp_path: Path) -> None:
    csv_file = tmp_path / "items.csv"
    csv_file.write_text("sku,name,category,price,colour\nA1,Red shirt,shirt,9.5,red\nA2,Blue mug,mug,3,blue\n")
    run_import(store, "items", csv_file, settings=settings, mapping={"item_id": "sku", "title": "name"})
    pq_file = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": ["P1"], "title": ["Lamp"], "price": [20.0]}), pq_file)
    run_import(store, "items", pq_file, settings=settings)
    ev = tmp_path / "events.jsonl"
    ev.write_text("\n".join(json.dumps(e) for e in [
        {"user_id": "u1", "item_id": "A1", "type": "view", "timestamp": "2024-01-01T10:00:00Z"},
        {"user_id": "u1", "item_id": "A1", "type": "view", "timestamp": "2024-01-01T10:00:00Z"},
        {"user_id": "u1", "item_id": "P1", "type": "purchase", "timestamp": 1704103200, "event_id": "e9"},
    ]) + "\n")
    run_import(store, "events", ev, settings=settings)
    run_import(store, "events", ev, settings=settings)
    st = _stats(store)
    assert st["items"] == 3 and st["users"] == 1 and st["events"] == 3
    with store.session() as s:
        a1 = s.scalar(select(Item).where(Item.external_id == "A1"))
        assert a1 is not None and a1.title == "Red shirt" and a1.attributes == {"colour": "red"}


def test_bad_rows_are_skipped_and_listed(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    rows = ["item_id,title,price"] + [f"I{i},Item {i},{i}" for i in range(30)]
    rows += ["I99,Bad price,abc", "I98,too,many,fields", ",no id,1"]
    f.write_text("\n".join(rows) + "\n")
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].inserted == 30
    lines = {b.line: b.reason for b in report.bad_rows}
    assert set(lines) == {32, 33, 34}
    assert "price" in lines[32] and "fields" in lines[33] and "item_id" in lines[34]


def test_repeated_ids_in_a_file_are_counted(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\na,first\nb,x\na,second\n")
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].repeated == 1 and report.tables["items"].inserted == 2
    with store.session() as s:
        assert s.scalar(select(Item.title).where(Item.external_id == "a")) == "second"


def test_an_object_is_not_an_id(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.jsonl"
    f.write_text("".join(f'{{"item_id": "I{i}"}}\n' for i in range(20)) + '{"item_id": {"a": 1}}\n')
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].inserted == 20
    assert [(b.line, b.reason) for b in report.bad_rows] == [(21, "item_id must be a string or a number, not dict")]


def test_unknown_item_in_events_is_reported(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    f = tmp_path / "ev.csv"
    f.write_text("user_id,item_id,type,timestamp\nc1,0108775015,view,2024-01-01\nc1,NOPE,view,2024-01-01\n")
    report = run_import(store, "events", f, settings=settings)
    assert report.tables["events"].inserted == 1
    assert [b.line for b in report.bad_rows] == [3] and "unknown item" in report.bad_rows[0].reason


def test_events_on_items_not_imported_yet_are_not_a_garbled_file(store: Store, settings: Settings,
                                                                 tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    f = tmp_path / "ev.csv"
    rows = [f"c1,{'0108775015' if i % 2 else f'NEW{i}'},view,2024-01-{i % 28 + 1:02d}" for i in range(30)]
    f.write_text("user_id,item_id,type,timestamp\n" + "\n".join(rows) + "\n")
    report = run_import(store, "events", f, settings=settings)  # half unknown: well-formed rows, not garbled
    counts = report.tables["events"]
    assert (counts.inserted, counts.skipped, counts.unknown_items) == (15, 15, 15)
    f.write_text("user_id,item_id,type,timestamp\n" + "\n".join(f"c1,NEW{i},view,2024-01-01" for i in range(25)))
    with pytest.raises(ImportFailed, match="none of its 25 rows could be imported; first at line 2: unknown item"):
        run_import(store, "events", f, settings=settings)


@pytest.mark.parametrize("damage", ["truncate", "binary", "quote", "garble"])
def test_unreadable_file_fails_and_leaves_store_unchanged(
    store: Store, settings: Settings, tmp_path: Path, damage: str
) -> None:
    root = write_hm(tmp_path / "hm")
    run_import(store, "hm", root, settings=settings)
    before = _stats(store)
    tx = root / "transactions.csv"
    good = tx.read_text() + "".join(f"2019-01-0{d % 9 + 1},c{d % 2 + 1},0108775044,0.01,1\n" for d in range(40))
    if damage == "truncate":
        tx.write_text(good[: good.rindex("\n", 0, len(good) - 1) + 12])
    elif damage == "binary":
        tx.write_bytes(good.encode()[:200] + b"\xff\xfe\x00\x81garbage\n" + good.encode()[200:])
    elif damage == "quote":
        tx.write_text(good + '2019-02-01,c1,"0108775044,0.01,1\n')
    else:
        tx.write_text(good.replace(",", ";"))
    with pytest.raises(ImportFailed) as exc:
        run_import(store, "hm", root, settings=settings)
    assert "transactions.csv" in str(exc.value)
    if damage != "garble":
        assert ":" in str(exc.value).split("transactions.csv", 1)[1][:3]  # names a line
    assert _stats(store) == before


def test_media_rows_point_at_files(store: Store, settings: Settings, tmp_path: Path) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    with store.session() as s:
        uris = list(s.scalars(select(ItemMedia.uri)))
    assert len(uris) == 2 and all(Path(u).is_file() for u in uris)


def test_the_wrong_file_or_path_is_refused_whole(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A directory, a file without the columns its kind needs, a --map of a column the file lacks: one message
    naming what is wrong, and nothing stored (a few bad rows of a right file are skipped instead, as above)."""
    (tmp_path / "adir").mkdir()
    no_id = tmp_path / "prices.csv"
    no_id.write_text("sku,price\na1,3\n")
    events = tmp_path / "ev.csv"
    events.write_text("user_id,item_id,timestamp\nu1,a1,2026-01-01\n")
    untimed = tmp_path / "untimed.csv"
    untimed.write_text("user_id,item_id,type\nu1,a1,view\n")
    all_bad = tmp_path / "all_bad.csv"  # fewer rows than the bad-fraction check waits for, but none usable
    all_bad.write_text("user_id,item_id,type,timestamp\nu1,a1,view,soon\nu2,a1,view,later\n")
    cases = [
        ("items", tmp_path / "adir", {}, "is a directory"),
        ("hm", tmp_path / "adir", {}, "articles.csv: not found"),
        ("items", no_id, {}, r"no item_id column .*--map item_id=COLUMN"),
        ("items", no_id, {"item_id": "id"}, r"--map names column\(s\) \['id'\]"),
        ("events", events, {}, r"no type column .*--type TYPE"),
        ("events", untimed, {}, r"no timestamp column .*--map timestamp=COLUMN"),
        ("events", all_bad, {}, r"none of its 2 rows could be imported; first at line 2: unparseable timestamp"),
    ]
    for source, path, mapping, message in cases:
        with pytest.raises(ImportFailed, match=message):
            run_import(store, source, path, settings=settings, mapping=mapping)
    assert _stats(store)["items"] == 0 and _stats(store)["events"] == 0
    run_import(store, "items", no_id, settings=settings, mapping={"item_id": "sku"})
    assert _stats(store)["items"] == 1


def test_undecodable_bytes_are_placed_on_their_line(store: Store, settings: Settings, tmp_path: Path) -> None:
    rows = "".join(f"i{n},title {n}\n" for n in range(2000))  # well past the text reader's first block
    for name in ("late.csv", "late.jsonl"):
        f = tmp_path / name
        body = ("item_id,title\n" + rows if name.endswith(".csv") else
                "".join(f'{{"item_id": "i{n}", "title": "t"}}\n' for n in range(2001)))
        lines = body.encode().split(b"\n")
        lines[1500] = lines[1500].replace(b"i", b"\xe9", 1)
        f.write_bytes(b"\n".join(lines))
        with pytest.raises(ImportFailed, match=rf"{name}:1501: not valid utf-8"):
            run_import(store, "items", f, settings=settings)
    assert _stats(store)["items"] == 0


def test_a_price_feed_does_not_bring_back_a_deleted_item(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A record without a title (a price feed) updates a deleted item's fields and leaves it deleted; a catalogue
    record (with its title) brings it back."""
    from recsys.store.items import set_flags

    full = tmp_path / "items.csv"
    full.write_text("item_id,title,description,category,price,image,colour\ns1,Red dress,Silk,dress,10,,red\n")
    run_import(store, "items", full, settings=settings)
    with store.session() as s:
        set_flags(s, ["s1"], deleted=True)
    feed = tmp_path / "prices.csv"
    feed.write_text("item_id,price\ns1,12.5\n")
    assert run_import(store, "items", feed, settings=settings).tables["items"].updated == 1
    with store.session() as s:
        assert s.execute(select(Item.deleted, Item.price).where(Item.external_id == "s1")).one() == (True, 12.5)
    run_import(store, "items", full, settings=settings)
    with store.session() as s:
        assert s.execute(select(Item.deleted, Item.price).where(Item.external_id == "s1")).one() == (False, 10.0)


def test_an_id_with_a_slash_is_a_bad_row(store: Store, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "items.csv"
    f.write_text("item_id,title\nsku/42,Mug\n sku-43 ,Cup\n..,Dots\n . ,Dot\n")
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].inserted == 1  # the other one, stored trimmed as "sku-43"
    assert [b.line for b in report.bad_rows] == [2, 4, 5] and "'/'" in report.bad_rows[0].reason
    assert "dot segment" in report.bad_rows[1].reason  # a browser resolves /items/.. to /


def test_a_result_links_no_image_that_failed_to_decode(store: Store, settings: Settings, tmp_path: Path) -> None:
    from sqlalchemy import update

    from recsys.store.summaries import CHUNK, item_summaries

    (tmp_path / "a.jpg").write_bytes(b"not an image")
    f = tmp_path / "items.csv"
    f.write_text("item_id,title,image\ns1,Red dress,a.jpg\ns2,Blue shirt,a.jpg\n")
    run_import(store, "items", f, settings=settings)
    with store.session() as s:
        s1 = s.scalar(select(Item.id).where(Item.external_id == "s1"))
        s.execute(update(ItemMedia).where(ItemMedia.item_id == s1).values(status="error", error="cannot decode"))
    got = item_summaries(store.read, ["s1", "s2", "nope"])  # the driver itself on SQLite
    assert got["s1"]["image_url"] is None and got["s2"]["image_url"] == "/media/s2" and "nope" not in got
    with store.reading() as c:  # through SQLAlchemy: the same, in chunks past CHUNK ids
        def through(statement: Any, params: Any) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in c.execute(statement, dict(params))]

        assert item_summaries(through, ["s2", "s1", *(f"x{i}" for i in range(CHUNK + 3))]) == got


def test_an_imported_datasets_folder_becomes_a_media_root(store: Store, settings: Settings, tmp_path: Path) -> None:
    """Photos of a dataset imported from outside the data directory are served without configuring its folder."""
    from recsys.api.media import media_roots, under_roots

    outside = tmp_path / "shop"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(b"x")
    (outside / "items.csv").write_text("item_id,title,image\ns1,Red dress,a.jpg\n")
    assert not under_roots(outside / "a.jpg", media_roots(settings))
    run_import(store, "items", outside / "items.csv", settings=settings)
    run_import(store, "items", outside / "items.csv", settings=settings)  # recorded once
    assert under_roots(outside / "a.jpg", media_roots(settings))
    assert media_roots(settings).count(outside.resolve()) == 1
    inside = settings.home / "data"
    inside.mkdir(parents=True)
    (inside / "items.csv").write_text("item_id,title\ns2,Blue shirt\n")
    run_import(store, "items", inside / "items.csv", settings=settings)  # under the data directory: nothing to add
    assert inside.resolve() not in media_roots(settings)


def test_photos_in_a_folder_linked_from_the_dataset_are_served(store: Store, settings: Settings,
                                                               tmp_path: Path) -> None:
    """`images -> /mnt/photos` beside the items file: the import and the build read the photos, but the server
    resolved each path to the link's target, outside the recorded folder, and served none of them."""
    from recsys.api.media import media_roots, under_roots

    disk = tmp_path / "other-disk" / "photos"
    disk.mkdir(parents=True)
    (disk / "a.jpg").write_bytes(b"x")
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "images").symlink_to(disk)
    (shop / "items.csv").write_text("item_id,title,image\ns1,Red dress,images/a.jpg\n")
    (tmp_path / "secret.txt").write_text("not a photo")
    run_import(store, "items", shop / "items.csv", settings=settings)
    roots = media_roots(settings)
    assert under_roots(shop / "images" / "a.jpg", roots)
    assert not under_roots(tmp_path / "secret.txt", roots)  # the link's target only, not its neighbourhood


def test_jsonl_with_a_byte_order_mark_and_deep_nesting(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A BOM cost the first record; nesting past the interpreter's limit was a traceback, and nesting just under
    it stored attributes the API could then not answer (a 500): each is now a per-line error or nothing at all."""
    nested: object = 1
    for _ in range(900):
        nested = [nested]
    f = tmp_path / "items.jsonl"
    lines = [json.dumps({"item_id": f"ok{i}", "title": "Red dress"}) for i in range(12)]
    lines.append('{"item_id": "deep", "title": "x", "attributes": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}")
    lines.append(json.dumps({"item_id": "nested", "title": "y", "attributes": {"n": nested}}))
    f.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    report = run_import(store, "items", f, settings=settings)
    with store.session() as s:
        assert sorted(s.scalars(select(Item.external_id))) == sorted(f"ok{i}" for i in range(12))  # ok0 too
    assert [b.line for b in report.bad_rows] == [13, 14]
    assert all("nested more than 8 levels" in b.reason for b in report.bad_rows)


def test_ids_with_control_characters_and_non_finite_attributes_are_bad_rows(store: Store, settings: Settings,
                                                                            tmp_path: Path) -> None:
    # PostgreSQL refused these inside the bulk insert (the whole file lost, a traceback); SQLite stored ids the API
    # can never address and attributes no JSON reader takes
    f = tmp_path / "items.jsonl"
    f.write_text('{"item_id": "n\\u00001", "title": "nul"}\n{"item_id": "x\\ny", "title": "newline"}\n'
                 '{"item_id": "z1", "weight": NaN}\n{"item_id": "z2", "size": {"w": 1e400}}\n'
                 '{"item_id": "z3", "dims": [1, -Infinity]}\n{"item_id": "ok", "weight": 2.5}\n')
    report = run_import(store, "items", f, settings=settings)
    assert report.tables["items"].inserted == 2  # z1: a NaN column is a missing value, as in pandas' exports
    reasons = {b.line: b.reason for b in report.bad_rows}
    assert "control character" in reasons[1] and "control character" in reasons[2] and 3 not in reasons
    assert reasons[4] == "attribute 'size' is inf, not a finite number" and "-inf" in reasons[5]
    with store.session() as s:
        assert s.scalar(select(Item.attributes).where(Item.external_id == "z1")) == {}
    ev = tmp_path / "ev.csv"
    ev.write_text("user_id,item_id,type,timestamp\nu\x01,ok,view,2024-01-01\nu1,ok,view,2024-01-01\n")
    report = run_import(store, "events", ev, settings=settings)
    assert report.tables["events"].inserted == 1 and "control character" in report.bad_rows[0].reason


def test_a_value_the_database_refuses_fails_the_import_with_a_message(store: Store, settings: Settings,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # a gap in the row checks (simulated) must still end in ImportFailed, never a driver traceback
    def refused(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import DataError

        raise DataError("INSERT ...", {}, Exception("invalid input syntax for type json\nDETAIL: ..."))

    f = tmp_path / "items.csv"
    f.write_text("item_id,title\na,A\n")
    monkeypatch.setattr("recsys.store.importers.batch.upsert_items", refused)
    with pytest.raises(ImportFailed, match=r"refused a value \(invalid input syntax for type json\); nothing was"):
        run_import(store, "items", f, settings=settings)
    assert _stats(store)["items"] == 0
