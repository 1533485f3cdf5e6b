"""The one ASGI middleware around every request: request id, body limit, metrics, access log, last-resort 500.

Pure ASGI (no BaseHTTPMiddleware) to keep the per-request overhead small.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.api.errors import unexpected_error
from recsys.api.logs import request_id_var
from recsys.api.metrics import Metrics
from recsys.store.deadline import bounded

access = logging.getLogger("recsys.api.access")
_RID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
"""With auth off, the one definition of loopback: the addresses a server may bind to (``recsys serve`` refuses
others) and clients may connect from. The rest of 127.0.0.0/8 is not: a client there gets 403, and a server bound
there would answer every request 421 (its address is not one of the ``Host`` names below)."""
_LOOPBACK = LOOPBACK | {"testclient"}
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]"}
"""The ``Host`` names served with auth off (any port): a web page whose name an attacker re-points to 127.0.0.1
(DNS rebinding) names its own host, so it is refused."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name in the metrics; any other token (a client may send one, with no key) is ``other``: one
series each made ``/metrics`` grow without bound."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _loggable(path: str) -> str:
    """A request path for the log: its control characters escaped (a percent-encoded newline wrote a forged line
    into the text log)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", path)


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, loopback_only: bool,
                 db_timeout_s: float | None = None) -> None:
        self.app = app
        self.db_timeout_s = db_timeout_s
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                rate = scope["state"].get("ratelimit")
                if rate is not None:
                    message["headers"] += rate.headers()
            await send(message)

        self.metrics.in_flight.inc()
        try:
            client = (scope.get("client") or ("", 0))[0]
            if self.loopback_only and client not in _LOOPBACK:
                # Auth is off: only this machine may call, whatever address the server was bound to.
                await _reply(scope, receive, send_wrapper, HTTPException(
                    403, "authentication is off on this server: only clients on 127.0.0.1 or ::1 are served; turn "
                         "auth on (RECSYS_API__AUTH=true) to serve others"))
                return
            if self.loopback_only and not _loopback_host(scope, client):
                await _reply(scope, receive, send_wrapper, HTTPException(
                    421, "authentication is off on this server: it answers only requests addressed to localhost, "
                         "127.0.0.1 or [::1] (a page that renamed this server, DNS rebinding, is refused); "
                         "turn auth on (RECSYS_API__AUTH=true) to serve other host names"))
                return
            too_big = _declared_length(scope) > self.max_body
            if too_big:
                await _reply(scope, receive, send_wrapper, too_large(self.max_body))
                return
            with bounded(self.db_timeout_s):  # every database call of the request, in worker threads too
                await self.app(scope, _limited(receive, self.max_body), send_wrapper)
        except Exception as exc:
            if started:
                raise
            await _reply(scope, receive, send_wrapper, exc)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(method, label, str(status)).inc()
            self.metrics.latency.labels(label).observe(elapsed)
            if access.isEnabledFor(logging.INFO):
                principal = scope["state"].get("principal")
                path = _loggable(scope["path"])
                access.info("%s %s %d", method, path, status, extra={
                    "method": method, "path": path, "route": label, "status": status,
                    "duration_ms": round(elapsed * 1000, 2), "key": getattr(principal, "name", None),
                })
            request_id_var.reset(token)


def _loopback_host(scope: Scope, client: str) -> bool:
    """Whether the request's ``Host`` (port aside) is a loopback name; no ``Host`` (HTTP/1.0, no browser) passes.
    The test client's own name passes only from the test client."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            host = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host.split(":", 1)[0]
            return host in _LOOPBACK_HOSTS or (host == "testserver" and client == "testclient")
    return True


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            rid = value.decode("latin-1")
            if _RID.match(rid):
                return rid
            break
    return uuid.uuid4().hex


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def too_large(limit: int) -> HTTPException:
    """The 413 of a body over ``limit``: it names the setting, so a client or operator knows what to change."""
    return HTTPException(413, f"request body over the limit of {limit:,} bytes (RECSYS_API__MAX_BODY_BYTES={limit}): "
                              "send fewer records per request, or raise the setting")


def _limited(receive: Receive, limit: int) -> Receive:
    """A receive that refuses a streamed (chunked) body once it passes the limit."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # HTTPException passes through FastAPI's body parsing untouched and becomes a JSON 413 (an
                # explorer page's route answers it with its error page: recsys.api.web.render.PageRoute).
                raise too_large(limit)
        return message

    return wrapped


def _is_page(scope: Scope) -> bool:
    """Whether a request is for an explorer page (a route of the explorer's router, included at the app's root,
    takes its path): checked here, before routing, its refusals are pages too."""
    from starlette.routing import Match

    from recsys.api.routes.web import router

    return any(r.matches(scope)[0] != Match.NONE for r in router.routes)


async def _reply(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    from recsys.api.errors import http_error

    request = Request(scope, receive)
    response: Any
    if isinstance(exc, HTTPException) and exc.status_code == 413 and _is_page(scope):
        from recsys.api.web.render import too_large_page

        response = too_large_page(request)  # a browser's form post: the explorer's page, never the API's JSON
    elif isinstance(exc, HTTPException):
        response = await http_error(request, exc)
    else:
        response = await unexpected_error(request, exc)
    await response(scope, receive, send)
