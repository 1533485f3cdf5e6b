"""MovieLens-100k layout: u.item (latin-1, '|'), u.data (tab), u.user, posters/<item_id>.jpg, details.json (optional).

Ratings become ``rating`` events with the star value; their id is derived from (item, timestamp) per user, so a
re-import adds nothing.
"""

from __future__ import annotations

import json
import re
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
    parse_float,
    parse_id,
    parse_ts,
)
from recsys.store.importers.report import ImportReport

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def _details(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ImportFailed(f"{path}: not valid JSON ({e}); remove it or fix it") from e
    if not isinstance(data, list):
        raise ImportFailed(f"{path}: expected a JSON list of movie objects")
    return {str(d.get("movie_id")): d for d in data if isinstance(d, dict)}


def _genres(path: Path) -> list[str]:
    if not path.exists():
        return GENRES
    names = [ln.split("|")[0] for ln in path.read_text(encoding="latin-1").splitlines() if "|" in ln]
    return names if len(names) == len(GENRES) else GENRES


def import_movielens(root: Path, writer: Writer, report: ImportReport, max_bad_fraction: float) -> None:
    u_item, u_data, u_user = root / "u.item", root / "u.data", root / "u.user"
    if not u_item.exists():
        raise ImportFailed(f"{u_item}: not found; DIR must hold the MovieLens-100k files (u.item, u.data, u.user)")
    details = _details(root / "details.json")
    genres = _genres(root / "u.genre")
    fields = ["movie_id", "title", "release_date", "video_release_date", "imdb_url", *genres]

    def item(rec: dict[str, Any]) -> ItemRecord:
        mid = parse_id(rec["movie_id"], "movie id")
        flags = [g for g in genres if rec.get(g, "0").strip() == "1"]
        if any(rec.get(g, "0").strip() not in ("0", "1") for g in genres):
            raise ValueError("genre flags must be 0 or 1")
        d = details.get(mid, {})
        year = re.search(r"\((\d{4})\)\s*$", rec["title"])
        attrs: dict[str, Any] = {"genres": flags}
        if year:
            attrs["year"] = int(year.group(1))
        for key in ("director", "cast"):
            if d.get(key):
                attrs[key] = d[key]
        if rec.get("imdb_url"):
            attrs["imdb_url"] = rec["imdb_url"]
        poster = root / "posters" / f"{mid}.jpg"
        return checked_item(ItemRecord(
            external_id=mid,
            title=rec["title"].strip(),
            description=str(d.get("description") or "").strip(),
            category=flags[0] if flags else None,
            attributes=attrs,
            media=[("image", str(poster.resolve()))] if poster.exists() else [],
        ))

    rows = read_delimited(u_item, delimiter="|", fieldnames=fields, encoding="latin-1", quoted=False)
    for _, it in parse_rows(rows, item, report, "items", u_item):
        writer.item(it)
    writer.flush_items()
    report.check_garbled("items", u_item, max_bad_fraction)

    if u_user.exists():
        def user(rec: dict[str, Any]) -> UserRecord:
            attrs = {"age": parse_float(rec["age"], "age"), "gender": rec["gender"],
                     "occupation": rec["occupation"], "zip": rec["zip"]}
            return UserRecord(parse_id(rec["user_id"], "user id"), attrs)

        rows = read_delimited(u_user, delimiter="|", fieldnames=["user_id", "age", "gender", "occupation", "zip"],
                              encoding="latin-1", quoted=False)
        for _, u in parse_rows(rows, user, report, "users", u_user):
            writer.user(u)
        writer.flush_users()
        report.check_garbled("users", u_user, max_bad_fraction)
    else:  # the users of the ratings are stored all the same, without their age, gender, occupation and zip
        report.notes.append(f"{u_user}: not found, so no user attributes (age, gender, occupation, zip) were "
                            f"imported; put u.user in {root} and import again to add them")

    if u_data.exists():
        rows = read_delimited(u_data, delimiter="\t", fieldnames=["user_id", "item_id", "rating", "timestamp"],
                              quoted=False)
        for line, ev in parse_rows(rows, rating_event, report, "events", u_data):
            writer.event(u_data, line, ev)
        writer.flush_events()
        report.check_garbled("events", u_data, max_bad_fraction)
    else:  # a catalogue alone may be meant, but a misnamed or uncopied u.data must not pass unsaid
        report.notes.append(f"{u_data}: not found, so no ratings were imported (only the movies"
                            f"{' and users' if u_user.exists() else ''}); put u.data in {root} and import again to "
                            "add them")


def rating_event(rec: dict[str, Any]) -> EventRecord:
    """One u.data row (user, item, rating 1-5, unix seconds) as a rating event."""
    user_id = parse_id(rec["user_id"], "user id")
    item_id = parse_id(rec["item_id"], "item id")
    rating = parse_float(rec["rating"], "rating", required=True)
    assert rating is not None
    if not 0 <= rating <= 5:
        raise ValueError(f"rating {rating} outside 0..5")
    ts = parse_ts(rec["timestamp"])
    return EventRecord(user_id, item_id, "rating", ts, rating, f"ml:{item_id}:{rec['timestamp'].strip()}")
