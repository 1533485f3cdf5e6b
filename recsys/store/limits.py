"""How long a stored value or a request may be: the one place the HTTP API's request shapes, the CLI and the
importers take their limits from, so a record a file may import is one the API would accept (and could send back)."""

from __future__ import annotations

MAX_ID = 128
"""An item or user id (the ``external_id`` columns)."""
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
"""What an id or a key in a request may hold: no control characters (PostgreSQL refuses NUL in text, and a newline
or escape in an id is a garbled field, not a name anyone can type)."""
DOT_SEGMENTS = frozenset({".", ".."})
"""Ids no URL path can hold: browsers and HTTP clients resolve ``/items/..`` to ``/`` before sending it."""
MAX_TEXT = 100_000
"""An item's title or description."""
MAX_SHORT_TEXT = 200
"""A category (its column is ``String(200)``) or an attribute's name."""
MAX_ATTRIBUTE_TEXT = 10_000
"""A text attribute value."""
MAX_MEDIA_URI = 4000
"""An image or video path or URL."""
MAX_EVENT_ID = 200
"""A client event id (``client_event_id`` is ``String(200)``)."""
MAX_EVENT_VALUE = 1e12
"""The largest magnitude of an event's ``value`` (a price paid, a rating). Ranking sums the prices paid per item:
two purchases of 1e308 made that sum inf (one of -1e308 besides made it NaN), and one alone a price ratio of e^709.
No real price comes near it, in any currency."""

MAX_K = 1000
"""Results in one list (``k``), and the deepest place a pinned item may take."""
MAX_QUERY = 2000
"""Characters of a text query."""
MAX_LIST = 1000
"""Entries of one list in a request (ids, events, rules) and of a variant's rules in an experiment."""
