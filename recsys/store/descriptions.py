"""Generated descriptions (``item_descriptions``): written by ``recsys items describe``, never mixed with the
merchant's text (``items.title``/``items.description`` are not touched here), read by the encoders and the explorer.

Writing an item's description replaces the earlier one; the lexical index follows by triggers (migration 0006).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
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
    pks = sorted({r.item_pk for r in rows})
    for i in range(0, len(pks), BATCH):
        session.execute(delete(ItemDescription).where(ItemDescription.item_id.in_(pks[i : i + BATCH])))
    now = utcnow()
    session.add_all(ItemDescription(item_id=r.item_pk, text=r.text, facets=[dict(f) for f in r.facets],
                                    source=r.source[:200], vocabulary=r.vocabulary[:200], created_at=now)
                    for r in {r.item_pk: r for r in rows}.values())
    return len(pks)


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
