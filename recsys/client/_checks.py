"""What both clients check before they send (the base URL and the API key, when a client is made) and how they turn
httpx's failures to send into RecsysErrors. Nothing here repeats a secret: a message names a key's fault, never the
key, and a URL without its ``user:password@``."""

from __future__ import annotations

from typing import Any

import httpx

from recsys.client._base import Call, ClientClosed, InvalidArgument, Unreachable, shown

DEFAULT_URL, DEFAULT_TIMEOUT = "http://127.0.0.1:8000", 30.0

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
"""Transport errors raised before any of the request reached the server."""


def checked_url(url: str | None) -> str:
    """The base URL a client sends to: ``http(s)://HOST[:PORT][/PREFIX]`` (a prefix for a server behind a proxy
    at a path). Refused here, naming it, where the first call would otherwise fail as something else: no scheme
    (httpx cannot send it, which read as "no answer"), or a path ending in /v1 (every call then got a 404, read as a
    missing item): the client adds /v1/... itself."""
    url = DEFAULT_URL if url is None else url
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as e:
        raise InvalidArgument(f"base_url {shown(url)!r} is not a URL ({e}); write it as http://HOST:PORT") from None
    if "://" not in url or not parsed.host:
        raise InvalidArgument(f"base_url {shown(url)!r} has no http:// or https:// in front: write it as "
                              f"'http://{shown(url).lstrip('/')}' (or https:// where the server is behind TLS)")
    if parsed.scheme not in ("http", "https"):
        raise InvalidArgument(f"base_url {shown(url)!r} is not an http:// or https:// URL")
    if parsed.query or parsed.fragment:
        raise InvalidArgument(f"base_url {shown(url)!r} has a query or fragment: give the server's address alone")
    if parsed.path.rstrip("/").endswith("/v1"):
        root = shown(parsed.copy_with(path=parsed.path.rstrip("/").removesuffix("/v1") or "/")).rstrip("/")
        raise InvalidArgument(f"base_url {shown(url)!r} ends in /v1: the client adds /v1/... to each call itself "
                              f"(and /healthz to the root); use {root!r}")
    return url


def key_headers(api_key: str | None) -> dict[str, str]:
    """The ``X-API-Key`` header for ``api_key`` (none for None or ""). Surrounding whitespace is stripped: a key
    read from a file, or a secret mounted as one, ends in a newline. A key no HTTP header can carry (a control
    character inside, a non-ASCII one) is refused here: httpx refused it on every call, which read as "no answer"
    with the key in the message, and a non-ASCII one raised a bare UnicodeEncodeError."""
    if not api_key:
        return {}
    if not isinstance(api_key, str):
        raise InvalidArgument(f"api_key must be a str, not a {type(api_key).__name__} (decode the key first)")
    key = api_key.strip()
    if not key:
        raise InvalidArgument("api_key is only whitespace: pass the key (rsk_...), or None for a server without keys")
    bad = next((i for i, ch in enumerate(key) if not " " <= ch <= "~"), None)
    if bad is not None:
        kind = "a non-ASCII" if ord(key[bad]) > 0x7E else "a control"
        raise InvalidArgument(f"api_key has {kind} character (at position {bad + 1}), which no HTTP header can "
                              "carry: pass the key as `recsys keys create` printed it (rsk_...). The key is not "
                              "shown here")
    return {"X-API-Key": key}


def check_given(http: httpx.Client | httpx.AsyncClient, url: str | None, timeout: float | None) -> None:
    """``base_url`` and ``timeout`` beside an own ``http=`` client: a base URL fills in one the httpx client lacks
    and must match one it has; the timeout is set on the httpx client, so one given here is refused."""
    if timeout is not None:
        raise InvalidArgument("timeout= is not used with http=: set it on your httpx client "
                              "(httpx.Client(timeout=...)), whose own timeout applies")
    if url is None:
        return
    url = checked_url(url)
    if not str(http.base_url):
        http.base_url = httpx.URL(url)
    elif str(http.base_url).rstrip("/") != str(httpx.URL(url)).rstrip("/"):
        raise InvalidArgument(f"base_url {shown(url)!r} is not the base_url of the httpx client given as http= "
                              f"({shown(http.base_url)!r}): pass one of them, or the same")


def closed(kind: str) -> ClientClosed:
    return ClientClosed(f"this {kind} is closed (close()/aclose() or the end of its with block): create a new one")


def invalid_url(call: Call[Any], e: httpx.InvalidURL) -> InvalidArgument:
    """httpx's refusal of a URL (an id of tens of thousands of characters) as a RecsysError."""
    return InvalidArgument(f"{call.method} {call.url[:80]}...: {e}; ids are at most 128 characters")


def not_sendable(call: Call[Any]) -> InvalidArgument:
    """httpx's refusal to write a request (``LocalProtocolError``: a header value with a newline, say, from the
    headers of an own ``http=`` client): nothing was sent, so it is not "no answer". Its text is not repeated: it
    quotes the header values, which carry the API key."""
    return InvalidArgument(f"{call.method} {call.url[:80]} could not be sent: httpx refused it as malformed HTTP "
                           "(LocalProtocolError), most likely a header value with a control or non-ASCII character "
                           "among the headers of the httpx client given as http= (not shown: they may hold secrets)")


def unreachable(call: Call[Any], url: httpx.URL, e: httpx.TransportError, tries: int) -> Unreachable:
    """httpx's transport error as :class:`Unreachable`, saying what to check (and, for a write that was sent,
    that it may have been applied and how to resend it safely)."""
    method, path, where = call.method, call.url, shown(url)
    if call.write and not isinstance(e, _NOT_SENT):
        what = "timed out" if isinstance(e, httpx.TimeoutException) else "lost its connection"
        return Unreachable(f"{method} {path} {what} ({type(e).__name__}) after it was sent: the server may have "
                           "applied it (a slow write still finishes). Check before sending it again, or resend "
                           "safely: events with the same event_id are stored once, items are upserts, and deleting "
                           "an item again answers 200 (delete_user again answers 404 once the first was done). A "
                           "longer Client(timeout=...) waits more", maybe_applied=True)
    if isinstance(e, httpx.TimeoutException):
        return Unreachable(f"{method} {path} timed out ({type(e).__name__}): is the server at {where} overloaded? "
                           "A longer Client(timeout=...) waits more")
    after = f" after {tries} tries" if tries > 1 else ""
    return Unreachable(f"{method} {path} got no answer{after} ({type(e).__name__}: {e}); is the recsys server "
                       f"running at {where}?")
