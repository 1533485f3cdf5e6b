"""H&M Personalized Fashion layout: articles.csv, images/<3 digits>/<article_id>.jpg, transactions.csv, customers.csv.

Article ids stay zero-padded strings. H&M gives a price only per transaction: it stays on each purchase event
(``value``) and is never turned into an item attribute here, since an article's median paid price would be a statistic
of every purchase, the withheld ones included (a leak: see the honest-evaluation notes in the README). Identical
transaction rows are separate units bought, so each gets its own event, numbered by occurrence: re-importing the same
file recreates the same ids and adds nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from recsys.errors import ImportFailed
from recsys.store.importers.batch import Writer, parse_rows
from recsys.store.importers.readers import read_delimited
from recsys.store.importers.records import (
    EventRecord,
    ItemRecord,
    UserRecord,
    checked_item,
    derived_event_id,
    event_digest,
    parse_float,
    parse_id,
    parse_ts,
)
from recsys.store.importers.report import ImportReport

ATTRIBUTES = {
    "colour": "colour_group_name",
    "perceived_colour": "perceived_colour_master_name",
    "pattern": "graphical_appearance_name",
    "product_type": "product_type_name",
    "product_group": "product_group_name",
    "department": "department_name",
    "index_group": "index_group_name",
    "section": "section_name",
    "garment_group": "garment_group_name",
    "product_code": "product_code",
}


def import_hm(root: Path, writer: Writer, report: ImportReport, max_bad_fraction: float) -> None:
    articles, transactions, customers = root / "articles.csv", root / "transactions.csv", root / "customers.csv"
    if not articles.is_file():
        raise ImportFailed(f"{articles}: not found; DIR must hold the H&M files (articles.csv, transactions.csv, "
                           "customers.csv, images/)")

    def item(rec: dict[str, Any]) -> ItemRecord:
        aid = parse_id(rec["article_id"], "article_id")
        image = root / "images" / aid[:3] / f"{aid}.jpg"
        return checked_item(ItemRecord(
            external_id=aid,
            title=rec.get("prod_name", "").strip(),
            description=rec.get("detail_desc", "").strip(),
            category=rec.get("product_type_name", "").strip() or None,
            attributes={k: rec.get(c, "").strip() for k, c in ATTRIBUTES.items() if rec.get(c, "").strip()},
            media=[("image", str(image.resolve()))] if image.exists() else [],
        ))

    rows = read_delimited(articles, required=("article_id", "prod_name"))
    for _, it in parse_rows(rows, item, report, "items", articles):
        writer.item(it)
    writer.flush_items()
    report.check_garbled("items", articles, max_bad_fraction)

    if customers.exists():
        def user(rec: dict[str, Any]) -> UserRecord:
            attrs = {k: v for k, v in rec.items() if k != "customer_id" and v not in ("", None)}
            if "age" in attrs:
                attrs["age"] = parse_float(attrs["age"], "age")
            return UserRecord(parse_id(rec["customer_id"], "customer_id"), attrs)

        rows = read_delimited(customers, required=("customer_id",))
        for _, u in parse_rows(rows, user, report, "users", customers):
            writer.user(u)
        writer.flush_users()
        report.check_garbled("users", customers, max_bad_fraction)
    else:  # the shoppers of the transactions are stored all the same, without their attributes
        report.notes.append(f"{customers}: not found, so no customer attributes (age, club membership...) were "
                            f"imported; put customers.csv in {root} and import again to add them")

    if transactions.exists():
        rows = read_delimited(transactions, required=("t_dat", "customer_id", "article_id"))
        for line, ev in parse_rows(rows, purchase_event, report, "events", transactions):
            writer.event(transactions, line, ev)
        writer.flush_events()
        report.check_garbled("events", transactions, max_bad_fraction)
    else:  # a catalogue alone may be meant, but a misnamed or uncopied transactions.csv must not pass unsaid
        report.notes.append(f"{transactions}: not found, so no purchases were imported (only the articles"
                            f"{' and customers' if customers.exists() else ''}); put transactions.csv in {root} and "
                            "import again to add them")


def purchase_event(rec: dict[str, Any], seen: Counter[tuple[str, ...]] | None = None) -> EventRecord:
    """One transactions.csv row as a purchase. Identical rows are separate units bought, numbered by occurrence in
    the file, so the derived event id of each is the same on every import or replay of the file: by ``seen`` (one
    counter per file, for a file read whole), or without it by the import's writer (which bounds its memory)."""
    user_id = parse_id(rec["customer_id"], "customer_id")
    item_id = parse_id(rec["article_id"], "article_id")
    ts = parse_ts(rec["t_dat"])
    price = parse_float(rec.get("price"), "price")
    key = (user_id, item_id, rec["t_dat"].strip(), str(price), str(rec.get("sales_channel_id") or "").strip())
    if seen is None:
        return EventRecord(user_id, item_id, "purchase", ts, price, repeat_of=event_digest("hm", key))
    seen[key] += 1
    return EventRecord(user_id, item_id, "purchase", ts, price, derived_event_id("hm", key, seen[key]))
