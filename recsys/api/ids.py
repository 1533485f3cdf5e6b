"""The ids requests carry: valid Unicode, printable, no control characters (PostgreSQL refuses NUL), at most 128
characters like the store's; and those that would write to another record, or to one no URL path could address,
refused."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator, StringConstraints

from recsys.store.limits import DOT_SEGMENTS, MAX_ID, PRINTABLE


def encodable(s: str) -> bool:
    """Whether ``s`` is valid Unicode text: JSON's escapes can give a lone surrogate (``"\\ud800"``), which no
    response, log line or database can encode as UTF-8."""
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def unicode_id(v: Any) -> Any:
    """``v``, or ValueError for a string with a lone surrogate (said plainly, not as pydantic's "unable to parse raw
    data as a unicode string")."""
    if isinstance(v, str) and not v.isascii() and not encodable(v):
        raise ValueError("an id must be valid Unicode text: it holds a lone surrogate (a \\ud800-\\udfff escape "
                         "outside a pair)")
    return v


def shown_id(v: Any) -> str | None:
    """A record's id as a batch result echoes it, any invalid one included: a lone surrogate is backslash-escaped
    (echoed raw, the whole answer failed to encode, a 500 after the batch's valid records were stored)."""
    return None if v is None else str(v).encode("utf-8", "backslashreplace").decode("utf-8")


Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=PRINTABLE), BeforeValidator(unicode_id)]


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
