"""The ids requests carry: printable, no control characters (PostgreSQL refuses NUL), at most 128 characters like
the store's; and those that would write to another record, or to one no URL path could address, refused."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, StringConstraints

from recsys.store.limits import DOT_SEGMENTS, MAX_ID, PRINTABLE

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=PRINTABLE)]


def trimmed_id(v: str) -> str:
    """An id as stored: ids are stored trimmed, so " a" would write to "a" while reads of " a" find nothing."""
    if v != v.strip():
        raise ValueError("an id may not start or end with whitespace (ids are stored trimmed: it would name another "
                         "record)")
    return v


def new_id(v: str) -> str:
    """An id that creates a record: trimmed, and without "/", which no ``/v1/items/{id}`` path could address."""
    if "/" in v or v in DOT_SEGMENTS:
        raise ValueError("an id may not contain '/' or be '.' or '..': items and users are addressed by id in URL "
                         "paths")
    return trimmed_id(v)


NewId = Annotated[Id, AfterValidator(new_id)]
"""The id of an item or user a request may create."""

PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID, pattern=PRINTABLE), AfterValidator(trimmed_id)]
"""An item or user id in a URL path."""
