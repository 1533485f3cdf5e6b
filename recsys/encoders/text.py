"""Item text: which fields make it, and how each is worded (``settings.encoder.text_fields``).

A field is an item column (``title``, ``category``, ``description``), ``attributes.KEY``, or
``generated_description`` (written from the image; present only on items whose own text is poor). Each non-empty field
is encoded on its own and the text vector is the weighted, renormalised sum of the field vectors, so a field's weight
is its say in the item's text vector (DESIGN.md decision 4), and a one-word query ("black", "dress") meets the one-word
field it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("title", "category", "description")
MAX_CHARS = 1000
GENERATED = "generated_description"
GENERATED_WEIGHT = 1.0
"""Weight of the generated description where ``text_fields`` does not name it (0 there turns it off)."""


@dataclass(frozen=True)
class ItemRecord:
    """What the encoders need of an item, detached from any database session."""

    item_id: str
    title: str = ""
    description: str = ""
    category: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    media: tuple[tuple[str, str], ...] = ()
    """(kind, uri) pairs in position order."""
    generated_description: str = ""
    """The description written from the item's image (``recsys items describe``), set only where the item's own
    text is poor (``encoder.generated_text_below``): then it is one more field of the item's text."""


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | set):
        return ", ".join(_render(v) for v in value if _render(v))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())[:MAX_CHARS]


def field_value(item: ItemRecord, name: str) -> str:
    """The text of one field (``title``, ``attributes.colour``...), "" when absent."""
    if name.startswith("attributes."):
        return _render(item.attributes.get(name.split(".", 1)[1]))
    if name in COLUMNS or name == GENERATED:
        return _render(getattr(item, name))
    return ""


def field_texts(item: ItemRecord, fields: Mapping[str, float]) -> list[tuple[str, str, float]]:
    """(field, text, weight) of each configured, non-empty, positively weighted field, in config order."""
    out = []
    names = [*fields, GENERATED] if item.generated_description and GENERATED not in fields else list(fields)
    for name in names:
        weight = fields.get(name, GENERATED_WEIGHT)
        if weight <= 0:
            continue
        text = field_value(item, name)
        if text:
            out.append((name, text, float(weight)))
    return out


def poor_text(title: str, description: str, below: int) -> bool:
    """Whether an item's own text (title and description) is shorter than ``below`` characters."""
    return len(title.strip()) + len(description.strip()) < below
