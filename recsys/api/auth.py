"""API keys: created once (the plain key is shown only then), stored as SHA-256 hashes, compared in constant time.

Three scopes: ``read`` (every query), ``events`` (queries and events: the key a storefront or tracking collector
holds, which can neither change the catalogue nor delete anyone) and ``admin`` (everything: items, deletions,
reports). The server keeps an in-memory
:class:`KeyRing` of live hashes, reloaded every few seconds; a new key works at once (an unknown key is looked up by
its hash), a key revoked with ``recsys keys revoke`` stops working at once (each request reads its key's revoked
flag on the event loop: :meth:`KeyRing.revoked`) and a database outage does not lock out clients whose keys are
known.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select

from recsys.errors import NotFound, ValidationFailed
from recsys.store.db import Store
from recsys.store.tables import ApiKey

log = logging.getLogger(__name__)

SCOPES = ("read", "events", "admin")
GRANTS = {"read": frozenset({"read"}), "events": frozenset({"read", "events"}), "admin": frozenset(SCOPES)}
"""What each scope may do: each includes the ones before it."""
PREFIX = "rsk_"
KEY_REVOKED = select(ApiKey.revoked).where(ApiKey.key_hash == bindparam("h"))
KEY_BY_NAME = select(ApiKey.key_hash, ApiKey.scope).where(ApiKey.name == bindparam("n"), ApiKey.revoked.is_(False))


@dataclass(frozen=True)
class KeyInfo:
    name: str
    scope: str
    created_at: datetime | None
    revoked: bool


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name and scope (``anonymous`` with admin scope when auth is off)."""

    name: str
    scope: str

    def allows(self, scope: str) -> bool:
        return scope in GRANTS.get(self.scope, frozenset({self.scope}))


ANONYMOUS = Principal("anonymous", "admin")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(store: Store, name: str, scope: str = "read") -> tuple[str, KeyInfo]:
    """A new key: returns the plain key (shown once, never stored) and its record."""
    if scope not in SCOPES:
        raise ValidationFailed(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValidationFailed("a key name is 1 to 200 characters, without tabs, newlines or control characters")
    key = PREFIX + secrets.token_urlsafe(32)
    with store.session() as s:
        old = s.scalar(select(ApiKey).where(ApiKey.name == name))
        if old is not None:
            was = " (revoked: names stay with their keys' records)" if old.revoked else ""
            raise ValidationFailed(f"an API key named {name!r} exists already{was}; pick another name")
        row = ApiKey(name=name, key_hash=hash_key(key), scope=scope)
        s.add(row)
        s.flush()
        info = KeyInfo(row.name, row.scope, row.created_at, row.revoked)
    return key, info


def list_keys(store: Store) -> list[KeyInfo]:
    with store.session() as s:
        rows = s.scalars(select(ApiKey).order_by(ApiKey.name))
        return [KeyInfo(r.name, r.scope, r.created_at, r.revoked) for r in rows]


def revoke_key(store: Store, name: str) -> None:
    name = name.strip()  # as create_key stored it
    with store.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.name == name))
        if row is None:
            raise NotFound(f"no API key named {name!r}; `recsys keys list` shows them")
        row.revoked = True


class KeyRing:
    """The live keys' hashes in memory; :meth:`lookup` compares against every one in constant time."""

    def __init__(self, store: Store, *, max_age_s: float = 5.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._keys: list[tuple[str, Principal]] = []
        self._loaded_at = float("-inf")

    def reload(self) -> None:
        """Re-read the live keys; on a database error the previous set stays in use."""
        with self.store.session() as s:
            rows = s.execute(select(ApiKey.key_hash, ApiKey.name, ApiKey.scope).where(ApiKey.revoked.is_(False)))
            self._keys = [(h, Principal(n, sc)) for h, n, sc in rows]
        self._loaded_at = time.monotonic()

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self.max_age_s

    def fetch(self, key: str) -> Principal | None:
        """A key unknown to the ring (created since the last reload): looked up by its hash, then remembered."""
        digest = hash_key(key)
        with self.store.session() as s:
            row = s.execute(select(ApiKey.name, ApiKey.scope).where(ApiKey.key_hash == digest,
                                                                    ApiKey.revoked.is_(False))).first()
        if row is None:
            return None
        principal = Principal(row[0], row[1])
        self._keys = [*self._keys, (digest, principal)]
        return principal

    async def revoked(self, digest: str) -> bool:
        """Whether the key with this hash was revoked (or deleted) since the ring was loaded: read now, so a
        revocation holds from the next request. An unreachable database answers False: known keys keep working."""
        from recsys.errors import StoreError

        try:
            rows = await self.store.fetch(KEY_REVOKED, {"h": digest})
        except StoreError:
            return False
        if rows and not rows[0][0]:
            return False
        self._keys = [(h, p) for h, p in self._keys if h != digest]
        return True

    def knows(self, name: str) -> bool:
        """Whether the ring holds a live key named ``name`` (no database read)."""
        return any(principal.name == name for _, principal in self._keys)

    async def entry(self, name: str) -> tuple[str, Principal] | None:
        """(hash, principal) of the live key named ``name``: from the ring, else read from the database (a key
        created since the last reload, e.g. through another worker)."""
        for h, principal in self._keys:
            if principal.name == name:
                return h, principal
        rows = await self.store.fetch(KEY_BY_NAME, {"n": name})
        return (str(rows[0][0]), Principal(name, str(rows[0][1]))) if rows else None

    def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        found = None
        for h, principal in self._keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, h):
                found = principal
        return found
