"""Stored users looked up by id: the ids near a misspelt one ("Did you mean ...?" in the explorer, the CLI and the
notebooks)."""

from __future__ import annotations

from typing import Any


def user_suggestions(store: Any, user_id: str, limit: int = 3) -> list[str] | None:
    """None for a stored user; else the stored ids one or two edits away, nearest first (at most ``limit``). A
    misspelt id would otherwise pass for a real shopper with no history, and a like there creates a new one."""
    from sqlalchemy import select

    from recsys.store.tables import User

    prefix = user_id[: max(3, len(user_id) * 2 // 3)]  # typos are mostly near the end of "user-0001"
    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with store.session() as s:
        if s.scalar(select(User.id).where(User.external_id == user_id)) is not None:
            return None
        near = s.scalars(select(User.external_id).where(User.external_id.like(like, escape="\\"))
                         .order_by(User.external_id).limit(500)).all()
    scored = sorted((d, u) for u in near if (d := _edits(user_id, str(u), 2)) <= 2)
    return [u for d, u in scored[:limit] if d == scored[0][0]]  # only the nearest: "user-0001", not "user-0100"


def _edits(a: str, b: str, most: int) -> int:
    """The edit (Levenshtein) distance of ``a`` and ``b``, or ``most + 1`` once it is surely above ``most``."""
    if abs(len(a) - len(b)) > most:
        return most + 1
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
        if min(row) > most:
            return most + 1
    return row[-1]
