"""SQL tables: the source of truth (DESIGN.md decision 1).

Internal integer keys stay inside the store; everything outside speaks external ids (strings, leading zeros kept).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

HISTORY_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "like", "dislike")
"""Event types that show interest in an item: what a user's history and the statistics are made of."""
NOT_HISTORY = ("impression",)
"""Event types that are feedback on a shown list, not interest in an item: never part of a history or a statistic."""
EVENT_TYPES = (*HISTORY_TYPES, *NOT_HISTORY)
"""Every event type the store accepts."""
REMOVED_SQLITE = "hidden IS 1 OR deleted IS 1"  # hidden or deleted, as `Item.hidden.is_(True) | ...` renders
REMOVED_POSTGRESQL = "hidden IS true OR deleted IS true"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON}


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(200), index=True)
    price: Mapped[float | None] = mapped_column(Float)
    in_stock: Mapped[bool] = mapped_column(Boolean, default=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)

    # Every request reads the removed items (part of a cached list's key): a partial index keeps that read
    # proportional to the removed items, not the catalogue. Its predicate is the query's, as each dialect renders it.
    __table_args__ = (Index("ix_items_removed", "external_id", sqlite_where=text(REMOVED_SQLITE),
                            postgresql_where=text(REMOVED_POSTGRESQL)),)


class CatalogueState(Base):
    """One row (id 1). ``removed_version`` goes up in the same transaction as any change to which items are hidden
    or deleted (database triggers, migration 0003), so a request learns from one integer whether the removed items
    changed instead of reading them all."""

    __tablename__ = "catalogue_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    removed_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    details_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Goes up with any change to what a result shows of an item (title, category, price, image: migration 0009),
    so a cached list with the old details is never answered."""


class ItemMedia(Base):
    """An image or video of an item. ``status``/``error`` record media that failed to decode, with the reason."""

    __tablename__ = "item_media"
    __table_args__ = (UniqueConstraint("item_id", "uri"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="image")
    uri: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Event(Base):
    """A typed, timestamped interaction. ``client_event_id`` makes ingestion idempotent per user."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("user_id", "client_event_id"),
        Index("ix_events_user_ts", "user_id", "ts"),
        # A user's count and highest id, impressions in or out (the result cache's key: recsys.store.queries
        # REQUEST_STATE, HISTORY_MARK), read from this index alone on PostgreSQL too (migration 0012).
        Index("ix_events_user_type_id", "user_id", "type", "id"),
        {"sqlite_autoincrement": True},  # ids never reused (migration 0008): the result cache keys on them
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16), index=True)
    value: Mapped[float | None] = mapped_column(Float)
    ts: Mapped[datetime] = mapped_column(DateTime, index=True)
    client_event_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    recommendation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The served list (``served_lists.id``) the event answers, when the client says so: attribution."""
    position: Mapped[int | None] = mapped_column(Integer)
    """The item's 0-based position in that list."""


class ServedList(Base):
    """A list the API answered: its recommendation id, where it came from and what it showed, in order. Written by a
    background writer (``recsys.feedback.served``), so a list under heavy load may be missing: never a source of
    truth for anything but attribution and feeds."""

    __tablename__ = "served_lists"
    __table_args__ = (Index("ix_served_lists_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[str | None] = mapped_column(String(128))
    """The external user id a list was asked for (personal lists; similar items or search asked with ``user_id``);
    None for a session's, trending, more-like-these, or a list asked without a user: any user's events count."""
    feed_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The first page's id when this list is a later page of a feed (``cursor=``)."""
    offset: Mapped[int] = mapped_column(Integer, default=0)
    item_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    size: Mapped[int] = mapped_column(Integer, default=0)
    """How many items the list showed (``len(item_ids)``, kept for the report's sums)."""
    index_generation: Mapped[str | None] = mapped_column(String(200))
    ranker_version: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    experiment: Mapped[str | None] = mapped_column(String(64), index=True)
    """The experiment the list was served under (``recsys.experiments``), and its variant; None outside one."""
    variant: Mapped[str | None] = mapped_column(String(64))


class ItemTag(Base):
    """A zero-shot tag (facet, label) with its score, from text-image similarity."""

    __tablename__ = "item_tags"
    __table_args__ = (UniqueConstraint("item_id", "facet", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    facet: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(200))
    score: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ItemDescription(Base):
    """A description generated from the item's image (``recsys items describe``), kept apart from the merchant's
    text: one per item, replaced on each run. ``facets`` holds what it was composed from: ``[{"facet", "label",
    "score"}]``. The lexical index covers ``text`` (migration 0006)."""

    __tablename__ = "item_descriptions"

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    facets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(200), default="")
    """``zero-shot:<encoder id>``: the model that wrote it."""
    vocabulary: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Artifact(Base):
    """An audit log of derived artifacts: one row per fitted encoder's heads (``kind="encoder"``, written by
    :mod:`recsys.encoders.fit`) and per built index generation (``kind="index"``, :mod:`recsys.index.build`), with
    its manifest. Rankers are not recorded. Nothing in recsys reads it and nothing keeps it in step with the disk
    (a pruned generation keeps its row): the generations on disk, as ``recsys index list`` and ``recsys ranker
    list`` show them, are what is served."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("kind", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    version: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ApiKey(Base):
    """An API key, stored as a SHA-256 hash; scope is "read", "events" or "admin" (recsys.api.auth)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16), default="read")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
