"""Generated descriptions (``item_descriptions``): written by ``recsys items describe``, never mixed with the
merchant's text (``items.title``/``items.description`` are not touched here), read by the encoders and the explorer.

Writing an item's description replaces the earlier one, in place (insert or update: two runs writing the same item
at once both succeed, the later commit wins); the lexical index follows by triggers (migrations 0006, 0010).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from recsys.store.tables import ItemDescription, utcnow

BATCH = 500


@dataclass(frozen=True)
class GeneratedDescription:
    """One item's generated description and the facets (label, score) it was composed from."""

    item_pk: int
    text: str
    facets: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    source: str = ""
    vocabulary: str = ""


def replace_descriptions(session: Session, rows: Sequence[GeneratedDescription]) -> int:
    """Store ``rows``, replacing any earlier generated description of the same items; returns how many."""
    now = utcnow()
    latest = {r.item_pk: r for r in rows}
    # In key order: the description trigger locks each item (migration 0010), and writers that lock in one order
    # cannot deadlock each other.
    values = [{"item_id": pk, "text": r.text, "facets": [dict(f) for f in r.facets], "source": r.source[:200],
               "vocabulary": r.vocabulary[:200], "created_at": now} for pk, r in sorted(latest.items())]
    for i in range(0, len(values), BATCH):
        session.execute(_upsert(session, values[i : i + BATCH]))
    return len(values)


def _upsert(session: Session, values: list[dict[str, Any]]) -> Any:
    """Insert or update in one statement: a delete then insert raced a concurrent writer of the same item to a
    duplicate key (both found no row, both inserted)."""
    upsert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = upsert(ItemDescription).values(values)
    kept = ("text", "facets", "source", "vocabulary", "created_at")
    return stmt.on_conflict_do_update(index_elements=[ItemDescription.item_id],
                                      set_={c: stmt.excluded[c] for c in kept})


def description_vocabularies(session: Session, item_pks: Iterable[int]) -> dict[int, str]:
    """Item key -> the vocabulary that wrote its generated description, for those of ``item_pks`` that have one."""
    pks = sorted(set(item_pks))
    out: dict[int, str] = {}
    for i in range(0, len(pks), BATCH):
        out.update(session.execute(select(ItemDescription.item_id, ItemDescription.vocabulary)
                                   .where(ItemDescription.item_id.in_(pks[i : i + BATCH]))).tuples().all())
    return out


def remove_descriptions(session: Session, item_pks: Iterable[int]) -> int:
    """Forget the generated descriptions of these items; returns how many there were."""
    pks = sorted(set(item_pks))
    n = 0
    for i in range(0, len(pks), BATCH):
        n += session.execute(delete(ItemDescription)
                             .where(ItemDescription.item_id.in_(pks[i : i + BATCH]))).rowcount or 0  # type: ignore[attr-defined]
    return n


def generated_texts(session: Session) -> dict[int, str]:
    """Item key -> generated description, for every item that has one."""
    return {pk: t for pk, t in session.execute(select(ItemDescription.item_id, ItemDescription.text)) if t}


def description_details(session: Session, item_pk: int) -> dict[str, Any] | None:
    """An item's generated description as the API and the explorer show it (None when it has none)."""
    d = session.get(ItemDescription, item_pk)
    if d is None:
        return None
    return {"text": d.text, "generated": True, "source": d.source, "vocabulary": d.vocabulary,
            "facets": d.facets, "created_at": d.created_at}
