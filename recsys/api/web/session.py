"""The explorer's login session: a signed cookie that names the API key and when it expires, never the key itself.

    value = base64url(key name) "." expiry (unix seconds) "." HMAC-SHA256(secret, name "|" expiry "|" key hash)

The secret is a random file in the data directory (``secrets/session.key``, mode 0600), shared by the workers and
the replicas that share the directory. The key's stored hash is signed too, so a revoked or replaced key ends its
sessions; and a stolen cookie is worth a session until it expires (``api.session_hours``), not the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path

from recsys.api.auth import KeyRing, Principal
from recsys.config import Settings

COOKIE = "recsys_session"


@cache
def _secret(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _create_secret(path)
    for _ in range(100):
        data = path.read_bytes()
        if len(data) >= 32:
            return data
        time.sleep(0.02)  # only where the file system has no hard links: a writer may be between create and write
    raise OSError(f"{path} holds no usable session secret; delete it and restart")


def _create_secret(path: Path) -> None:
    """Write the secret whole under a private name, then link it into place: the workers of a fresh server racing
    to their first login never read a file that exists but is not written yet; the first link wins."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here (some network and FAT file systems): create it in place
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(fd, "wb") as f:
                f.write(tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def home_secret(settings: Settings) -> bytes:
    """The data directory's secret (made on first use), shared by every worker and replica that shares the
    directory: it signs session cookies, and feed cursors derive their key from it. OSError when unusable."""
    return _secret(Path(settings.home).resolve() / "secrets" / "session.key")


def _mac(settings: Settings, name: str, expiry: int, key_hash: str) -> str:
    return hmac.new(home_secret(settings), f"{name}|{expiry}|{key_hash}".encode(), hashlib.sha256).hexdigest()


def issue(settings: Settings, principal: Principal, key_hash: str, now: float | None = None) -> tuple[str, int]:
    """The cookie value for a logged-in key, and its lifetime in seconds."""
    ttl = int(settings.api.session_hours * 3600)
    expiry = int((time.time() if now is None else now) + ttl)
    name = base64.urlsafe_b64encode(principal.name.encode()).decode().rstrip("=")
    return f"{name}.{expiry}.{_mac(settings, principal.name, expiry, key_hash)}", ttl


async def principal(settings: Settings, ring: KeyRing, value: str,
                    miss: Callable[[], Awaitable[None]] | None = None) -> Principal | None:
    """The key a session cookie stands for, or None when it is malformed, forged, expired or its key revoked.
    ``miss`` is awaited before a key name the ring does not hold is read from the database (it may raise: the
    caller's rate limit)."""
    try:
        enc, expiry_text, mac = value.split(".")
        name = base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4)).decode()
        expiry = int(expiry_text)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return None
    if len(mac) != 64 or not all(c in "0123456789abcdef" for c in mac):
        return None  # not a digest we issue (compare_digest raises on non-ASCII text): no key lookup either
    if expiry < time.time():
        return None
    if miss is not None and not ring.knows(name):
        await miss()  # a name the ring does not hold costs a database read: counted like an unknown key first
    entry = await ring.entry(name)
    if entry is None or not hmac.compare_digest(mac, _mac(settings, name, expiry, entry[0])):
        return None
    if await ring.revoked(entry[0]):
        return None
    return entry[1]
