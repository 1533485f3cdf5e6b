"""What `recsys recommend` says about a user it has little to go on for: an id with no stored events (with the
stored ids it resembles), or a buy-again list that came back empty, and why."""

from __future__ import annotations

from typing import Any


def no_events(store: Any, user_id: str) -> str:
    """``'X' has no stored events (did you mean ...?)``: a misspelled id must not pass for a real shopper."""
    from recsys.store.users import user_suggestions

    near = user_suggestions(store, user_id)
    said = f"did you mean {' or '.join(map(repr, near))}?" if near else "a new user, or a misspelled id?"
    return f"{user_id!r} has no stored events ({said})"


def nothing_again(rec: Any, user_id: str, now: str | None) -> str:
    """Why a buy-again list is empty: no stored events, none before the ``--now`` given, a ranker that never lists a
    shopper's own items (MovieLens), or own items that cannot be listed."""
    from recsys.store.queries import user_event_records

    ranker = rec.generations.current().ranker
    if ranker is not None and not ranker.repurchase:
        return ("this store's ranker never lists a shopper's own items again (under 1% of its events repeat an item, "
                "as on MovieLens), so buy-again does not apply here")
    with rec.store.reading() as c:
        has_events = bool(user_event_records(c, user_id))
    if not has_events:
        return no_events(rec.store, user_id)
    if now:  # only an explicit time cuts the history; on the clock a user's newer events move "now" forward
        return f"{user_id!r} has no history before --now {now}"
    return f"none of {user_id!r}'s items can be listed again (they are hidden, deleted, disliked or not indexed yet)"
