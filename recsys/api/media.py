"""Where item images may live for the API: under the configured media roots (``api.media_roots``, plus the data
directory), never anywhere else on the server's disk, and never the data directory's own files (its database,
keys and derived files: :func:`recsys.store.media_roots.private`).

An admin key writes image locations (``PUT /v1/items/{id}``) and any read key is then served the file
(``/media/{id}``) and shown the item's details. So a location outside the roots is refused when written, a recorded
one outside them (from an older version, or moved roots) is never served, and callers see media URLs, not paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

from recsys.errors import ValidationFailed
from recsys.store.media_roots import PRIVATE_REASON, media_roots, private, relocated, under_roots

__all__ = ["UNREADABLE", "check_image_field", "local_path", "media_roots", "private", "public_item", "relocated",
           "under_roots"]

UNREADABLE = "the image could not be read"


def local_path(uri: str) -> Path | None:
    """The file a recorded media URI names, or None for an http(s) URL (served by redirect, never read here)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return None
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))  # file:///a%20b.png names "a b.png"
    return Path(uri)


def check_image_field(image: str | None, roots: list[Path]) -> None:
    """Refuse an item's ``image`` (``|``-separated locations) that names a local file outside the media roots or a
    URL scheme other than http(s). Relative paths count from the server's working directory, as they are stored."""
    for part in (p.strip() for p in (image or "").split("|")):
        if not part:
            continue
        scheme = urlparse(part).scheme
        if "://" in part and scheme not in ("http", "https", "file"):
            raise ValidationFailed(f"image: the scheme {scheme!r} is not supported; use http(s) or a file path")
        path = local_path(part)
        if path is not None and private(Path(os.path.realpath(Path.cwd() / path)), roots):
            raise ValidationFailed(f"image: {PRIVATE_REASON}")
        if path is not None and not under_roots(Path.cwd() / path, roots):
            raise ValidationFailed("image: local files must lie under the server's media roots "
                                   "(setting api.media_roots, or the data directory)")


def public_item(details: dict[str, Any]) -> dict[str, Any]:
    """An item's details as callers see them: each image as a URL (its http(s) address, or this server's media
    route for a local file) and a media problem without the file's path or the reason it could not be read."""
    item_id = str(details.get("item_id", ""))
    media, n = [], 0
    for m in details.get("media") or ():
        uri = str(m.get("uri") or "")
        out = {"kind": m.get("kind"), "status": m.get("status"), "uri": None, "error": None}
        if local_path(uri) is None:  # a remote image: its address, even when it could not be embedded
            out["uri"] = uri
        elif m.get("status") == "error":
            out["error"] = UNREADABLE
        if m.get("kind") == "image" and m.get("status") != "error":  # numbered as /media/{id}?n= numbers them
            if out["uri"] is None:
                out["uri"] = f"/media/{quote(item_id, safe='')}?n={n}"
            n += 1
        media.append(out)
    return {**details, "media": media}
