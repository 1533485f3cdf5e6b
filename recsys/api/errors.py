"""One place that turns every failure into an RFC 9457 problem (``application/problem+json``).

The body carries the RFC 9457 members and, for the clients written before them, the same facts under ``error``::

    {"type": "urn:recsys:problem:unknown_item", "title": "Unknown item", "status": 404,
     "detail": "unknown item 'x'", "instance": "/v1/items/x", "code": "unknown_item", "request_id": "...",
     "error": {"code": "unknown_item", "message": "unknown item 'x'", "request_id": "..."}}

Domain errors (:class:`~recsys.errors.RecsysError`) carry their own ``status`` and ``code``; a store outage is a 503
with Retry-After; validation failures are 422 with the offending fields (``details``); anything else is a bug, logged
with its traceback and answered with a 500 that leaks nothing. Messages meant for an operator (database URLs, driver
errors, file paths) are logged; callers get :func:`public_message`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.errors import (
    DiskFull,
    RateLimited,
    RecsysError,
    SchemaBehind,
    StoreBusy,
    StoreDamaged,
    StoreDenied,
    StoreError,
    StoreReadOnly,
    StoreTimeout,
)
from recsys.store.deadline import timed_out

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 409: "conflict", 413: "too_large", 415: "unsupported_media_type", 421: "misdirected",
    422: "invalid", 429: "rate_limited", 503: "unavailable",
}


_URL = re.compile(r"\b(?!https?://)[A-Za-z][A-Za-z0-9+.-]*://\S+")
_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:)?(?:[/\\][^\s'\"/\\<>|,;()]+){2,}[/\\]?")
_API_PATH = re.compile(r"^/(?:v1|docs|redoc|openapi\.json|healthz|readyz|metrics|media|items|users)(?:/|$)")


def redact(text: str) -> str:
    """``text`` without what only an operator should see: non-HTTP URLs (a database's driver, user, host, port and
    name) and file system paths (the data directory, the SQLite file, the index directory)."""
    text = _URL.sub("<database>", text)
    return _PATH.sub(lambda m: m.group(0) if _API_PATH.match(m.group(0))
                     else "<path>:" if m.group(0).endswith(":") else "<path>", text)


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    """What the server serves (``runtime.status``) as any reader may see it: texts :func:`redact`-ed (the reason no
    ranker is served names the data directory)."""
    def clean(v: Any) -> Any:
        if isinstance(v, str):
            return redact(v)
        return [clean(x) for x in v] if isinstance(v, list | tuple) else v

    return {k: clean(v) for k, v in status.items()}


def public_message(exc: RecsysError) -> str:
    """What a caller may read of a domain error. A store error says only that the database is unreachable, busy or
    slow: its message names the server and the driver's own error, which the server log keeps."""
    if isinstance(exc, StoreTimeout):
        return (f"the database gave no answer {f'in {exc.seconds:g} s' if exc.seconds is not None else 'in time'} "
                "(a table locked, or the server overloaded); retry shortly")
    if isinstance(exc, StoreBusy):
        return "the database is busy with another write (e.g. an import); retry shortly"
    if isinstance(exc, DiskFull):
        return ("the database's disk is full: nothing of this request was stored, and retrying will not help until "
                "the operator frees space (the server log names the disk)")
    if isinstance(exc, StoreDamaged):
        return ("the database is damaged; retrying will not help: the operator must restore it from a backup "
                "(the server log names the file)")
    if isinstance(exc, SchemaBehind):
        return SchemaBehind.public
    if isinstance(exc, StoreReadOnly):
        return ("the database is read-only: nothing of this request was stored, and retrying will not help until the "
                "operator makes it writable (the server log names the file)")
    if isinstance(exc, StoreDenied):
        return ("the database refused this server a privilege; retrying will not help until the operator grants it "
                "(the server log says which)")
    if isinstance(exc, StoreError):
        return "the database is unreachable; retry shortly"
    return redact(exc.message)


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE = "urn:recsys:problem:"
"""A problem's ``type`` is this prefix and its ``code`` (a name, not a link: nothing to fetch)."""


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(request: Request, status: int, code: str, message: str,
            details: list[Any] | None = None) -> dict[str, Any]:
    """The body of an error answer: RFC 9457 members, ``code`` and ``request_id``, and the ``error`` object."""
    rid = request_id(request)
    legacy: dict[str, Any] = {"code": code, "message": message, "request_id": rid}
    if details is not None:
        legacy["details"] = details
    return {"type": PROBLEM_TYPE + code, "title": code.replace("_", " ").capitalize(), "status": status,
            "detail": message, "instance": request.url.path, "code": code, "request_id": rid, "error": legacy}


def error_response(request: Request, status: int, code: str, message: str, *, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return ProblemResponse(problem(request, status, code, message, details), status_code=status, headers=headers)


def wait_headers(request: Request, exc: RecsysError, status: int) -> dict[str, str]:
    """``Retry-After`` for an answer that waiting heals: a 429 (the limiter's wait) or a 503 (the setting's)."""
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    return {"Retry-After": _retry_after(request)} if status == 503 else {}


def _retry_after(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    return str(settings.api.retry_after_seconds if settings is not None else 2)


_LOGGED: dict[str, float] = {}


def _log_store_error(exc: StoreError) -> None:
    """The store's own words (the file, read-only, damaged, gone), which the caller is not shown: once a minute per
    message, so an outage under load does not flood the log (a dead server is also logged by the refresh task)."""
    now = time.monotonic()
    if now - _LOGGED.get(exc.message, -60.0) >= 60.0:
        if len(_LOGGED) > 100:
            _LOGGED.clear()
        _LOGGED[exc.message] = now
        log.warning("store error answered as %d: %s", exc.status, exc.message)


async def recsys_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RecsysError)
    status = exc.status if 400 <= exc.status < 600 else 500
    if status >= 500 and not isinstance(exc, StoreError) and status != 503:
        # ConfigError is the only domain error that maps to 500: it means the server is misconfigured.
        log.error("server misconfigured: %s", exc.message)
    message = public_message(exc)
    if isinstance(exc, StoreError) and (isinstance(exc, StoreTimeout) or not isinstance(exc, StoreBusy)):
        _log_store_error(exc)  # SQLite's lock is an import at work; PostgreSQL's no answer is for the operator
    if message != exc.message and not isinstance(exc, StoreError):
        log.info("%s on %s %s (request %s): %s", exc.code, request.method, request.url.path, request_id(request),
                 exc.message)
    headers = wait_headers(request, exc, status)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(request, status, exc.code, message, headers=headers or None)


def _jsonable(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors[:20]:
        out.append({"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:300],
                    "type": str(e.get("type", ""))})
    return out


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _jsonable(list(exc.errors()))
    where = ".".join(details[0]["loc"]) if details else ""
    msg = str(details[0]["msg"]) if details else "invalid request"
    message = _body_problem(request, details) or (f"{where}: {msg}" if where else msg)
    return error_response(request, 422, "invalid", message, details=details)


def _body_problem(request: Request, details: list[dict[str, Any]]) -> str | None:
    """A body that is not JSON, or not sent as JSON, said as such (pydantic's words name a position in a list of
    characters, or ask for a dictionary)."""
    if not details or details[0]["loc"][:1] != ["body"]:
        return None
    first = details[0]
    if first["type"] == "json_invalid":
        return f"the request body is not valid JSON ({first['msg']}); send a JSON object"
    kind = request.headers.get("content-type", "")
    if len(first["loc"]) == 1 and "json" not in kind:
        return (f"the request body must be a JSON object sent with Content-Type: application/json (got "
                f"{kind or 'no Content-Type'})")
    return None


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers) if exc.headers else None
    detail = str(exc.detail)
    if detail == "There was an error parsing the body":  # FastAPI's words for any failure of its JSON parse
        cause = exc.__cause__
        detail = ("the request body could not be read: it is nested too deeply (a JSON value in thousands of "
                  "brackets)" if isinstance(cause, RecursionError)
                  else "the request body could not be read: a number in it has more than 4,300 digits"
                  if isinstance(cause, ValueError) and "integer string conversion" in str(cause)
                  else "the request body could not be read: it is not UTF-8 JSON")
    return error_response(request, exc.status_code, code, detail, headers=headers)


def _is_db_outage(exc: Exception) -> bool:
    try:
        from sqlalchemy.exc import DBAPIError, OperationalError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if _is_db_outage(exc) and timed_out(exc):
        # A code path that bypassed Store.session(): the server ended a wait at the request's bound.
        log.warning("the database gave no answer in time: %s", str(exc).splitlines()[0])
        return error_response(request, 503, StoreTimeout.code, "the database gave no answer in time (a table "
                              "locked, or the server overloaded); retry shortly",
                              headers={"Retry-After": _retry_after(request)})
    if _is_db_outage(exc):
        # A code path that bypassed Store.session(): still an outage, not a bug in the request.
        log.warning("database unreachable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return error_response(request, 503, "store_down", "the database is unreachable; retry shortly",
                              headers={"Retry-After": _retry_after(request)})
    log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id(request))
    return error_response(request, 500, "internal", "internal error; the server log has the details under this "
                                                    "request id")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RecsysError, recsys_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return problem_media_type(generate())

    app.openapi = openapi  # type: ignore[method-assign]


def problem_media_type(spec: dict[str, Any]) -> dict[str, Any]:
    """Document error answers under the media type they are sent with: FastAPI files every response model under
    application/json."""
    for item in spec.get("paths", {}).values():
        for op in item.values():
            for response in op.get("responses", {}).values() if isinstance(op, dict) else ():
                content = response.get("content") or {}
                schema = (content.get("application/json") or {}).get("schema") or {}
                if str(schema.get("$ref", "")).endswith("/ErrorResponse"):
                    content[PROBLEM_JSON] = content.pop("application/json")
    return spec
