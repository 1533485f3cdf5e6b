"""The SQL store: tables, sessions, queries and importers."""

from recsys.store.db import Store
from recsys.store.tables import (
    EVENT_TYPES,
    ApiKey,
    Artifact,
    Base,
    Event,
    Item,
    ItemMedia,
    ItemTag,
    User,
)

__all__ = [
    "EVENT_TYPES",
    "ApiKey",
    "Artifact",
    "Base",
    "Event",
    "Item",
    "ItemMedia",
    "ItemTag",
    "Store",
    "User",
]
