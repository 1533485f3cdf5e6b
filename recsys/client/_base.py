"""What the sync and async clients share: result types, the retry policy and reading error answers. Each endpoint is
a :class:`Call` (the request to send and how to read the answer, built in :mod:`recsys.client._calls`), so both
clients speak the API through one definition of it."""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from recsys import errors as _errors
from recsys.errors import RecsysError, ValidationFailed

T = TypeVar("T")


class ApiError(RecsysError):
    """An error answer whose code this client does not know, or an answer it cannot read (``bad_response``: not
    recsys JSON); ``status`` is the HTTP status."""

    def __init__(self, message: str, *, code: str, status: int, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.request_id = request_id


class Unreachable(RecsysError):
    """No answer from the server: it is down, the URL is wrong, or it took longer than the client's ``timeout``.
    ``maybe_applied`` is True for a write (events, items, deletes) that was sent but got no answer (a timeout, a
    dropped connection): the server may have applied it, so check or resend safely (events with the same
    ``event_id`` are stored once, items are upserts). The httpx error is the ``__cause__``."""

    code, status = "unreachable", 503

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class InvalidArgument(ValidationFailed, ValueError):
    """A call refused before anything is sent (an empty id, or one no URL path can address): a
    :class:`~recsys.errors.ValidationFailed` and a ValueError."""


class ClientClosed(RecsysError):
    """A call on a client after its ``close()`` / ``aclose()`` (or the end of its ``with`` block)."""

    code, status = "client_closed", 400


_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
"""A connection lost without an answer (not a timeout): what a reused keep-alive connection gives when the server
closed it just as the request went out."""


def _permanent(error: BaseException) -> bool:
    """A connect error that waiting does not heal: a name that does not resolve, a TLS failure."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            return True
        if isinstance(seen, socket.gaierror):
            return seen.errno != socket.EAI_AGAIN  # "temporary failure in name resolution" may heal
        seen = seen.__cause__ or seen.__context__
    text = str(error).lower()
    return any(m in text for m in ("name or service not known", "nodename nor servname", "no address associated",
                                   "getaddrinfo failed", "[ssl", "certificate verify failed"))


@dataclass(frozen=True)
class ItemSummary:
    """What a client shows beside a result's id (the server leaves it out with ``RECSYS_API__RESULT_DETAILS=false``).
    ``image_url`` is a path on the server (``/media/{id}``); ``extra`` holds the fields a later server adds."""

    title: str = ""
    category: str | None = None
    price: float | None = None
    image_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ItemSummary:
        price, category, image = d.get("price"), d.get("category"), d.get("image_url")
        return cls(title=str(d.get("title") or ""), category=None if category is None else str(category),
                   price=None if price is None else float(price), image_url=None if image is None else str(image),
                   extra={k: v for k, v in d.items() if k not in _SUMMARY_FIELDS})


_SUMMARY_FIELDS = frozenset(ItemSummary.__dataclass_fields__) - {"extra"}


@dataclass(frozen=True)
class Result:
    """One result, best first in its :class:`Page`. ``score`` is None where the server had no finite score to
    give; ``item`` is None where the server sends no details."""

    item_id: str
    score: float | None
    sources: list[str] = field(default_factory=list)
    explanation: dict[str, Any] | None = None
    item: ItemSummary | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Result:
        # fields a later server adds are left out, so this client keeps working against it
        score, item = d.get("score"), d.get("item")
        return cls(item_id=str(d["item_id"]), score=None if score is None else float(score),
                   sources=[str(s) for s in d.get("sources") or ()], explanation=d.get("explanation"),
                   item=None if item is None else ItemSummary.from_json(item))


@dataclass(frozen=True)
class Page:
    """Results best first, with the generations they came from and (on request) per-stage timings."""

    items: list[Result]
    meta: dict[str, Any] = field(default_factory=dict)
    debug: dict[str, Any] | None = None

    @property
    def ids(self) -> list[str]:
        return [r.item_id for r in self.items]

    @property
    def recommendation_id(self) -> str | None:
        """This list's id: send it with the events it leads to (``recommendation_id``, ``position``)."""
        return self.meta.get("recommendation_id")

    @property
    def variant(self) -> str | None:
        """The user's variant when the list was served under an experiment (``meta.experiment`` names it)."""
        return self.meta.get("variant")

    @property
    def next(self) -> str | None:
        """The cursor of the feed's next page (``recommend(..., cursor=page.next)``); None when there is none."""
        return self.meta.get("next")


@dataclass(frozen=True)
class EventResult:
    index: int
    status: str
    event_id: int | None = None
    error: str | None = None
    warning: str | None = None
    """Stored, but worth a look (an event on a deleted item)."""


_EVENT_FIELDS = frozenset(EventResult.__dataclass_fields__)


@dataclass(frozen=True)
class Retry:
    """When to send a request again: answers with a status in ``statuses`` whose error code is in ``codes`` (rate
    limited, store down or busy, a bare 503) or absent (a proxy's page) are retried after the server's
    ``Retry-After`` (or ``backoff_s``, doubling, when it sends none), at most ``attempts`` tries in all and
    ``max_wait_s`` seconds of waiting in all; a Retry-After past what is left of that budget raises at once. A 503
    that waiting cannot heal (``store_damaged``, ``no_index``, ``model_missing``, ``ranker``) raises at once.
    A proxy's 502 or 504 (no recsys error code) is retried like a 503, except for a request that must not be applied
    twice (a user's delete, events without ``event_id``): the server behind the proxy may have acted on it.
    A refused connection (the server restarting) is tried again after the doubling backoff, within the same budget;
    a name that does not resolve or a TLS failure is not. ``Retry(attempts=1)`` turns retries off. ``sleep`` /
    ``asleep`` are for tests."""

    attempts: int = 4
    max_wait_s: float = 30.0
    backoff_s: float = 0.5
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    codes: frozenset[str] = frozenset({"rate_limited", "store_down", "store_busy", "unavailable"})
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay(self, response: httpx.Response, attempt: int, waited: float, *, idempotent: bool = True) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None when ``response`` is final."""
        if response.status_code not in self.statuses or attempt >= self.attempts:
            return None
        if response.status_code in (502, 504) and not idempotent:
            return None
        problem = error_body(response)
        if problem is not None and problem.code not in self.codes:
            return None
        wait = retry_after(response.headers.get("retry-after"))
        return self._within(self.backoff_s * 2 ** (attempt - 1) if wait is None else wait, waited)

    def delay_after(self, error: httpx.TransportError, attempt: int, waited: float, *,
                    idempotent: bool = False) -> float | None:
        """Seconds to wait before try ``attempt + 1`` after ``error``, or None when it is final. A connection that
        was never made is tried again: nothing was sent, so even a POST cannot be applied twice. A dropped
        connection (reset, closed without an answer: a keep-alive connection the server closed as the request
        went out) is tried again only for a call that may be sent twice; a timeout is final (the server may be
        still working on it)."""
        dropped = idempotent and isinstance(error, _DROPPED)
        if not (isinstance(error, httpx.ConnectError) or dropped) or attempt >= self.attempts or _permanent(error):
            return None
        return self._within(self.backoff_s * 2 ** (attempt - 1), waited)

    def _within(self, wait: float, waited: float) -> float | None:
        return wait if waited + wait <= self.max_wait_s else None


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)  # delta-seconds; a fraction ("1.5") from a proxy too
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Call(Generic[T]):
    """One endpoint call: the request, and how to read the answer (``accept``: statuses that are answers, not
    errors; None means any 2xx). A 3xx is never an answer: the clients send with ``follow_redirects=False``.
    ``write``: it changes what the server stores; ``idempotent``: sending it twice does no harm (a proxy's 502/504
    is then retried)."""

    method: str
    url: str
    read: Callable[[httpx.Response], T]
    kwargs: dict[str, Any] = field(default_factory=dict)
    accept: tuple[int, ...] | None = None
    retry: bool = True
    write: bool = False
    idempotent: bool = True

    def result(self, r: httpx.Response) -> T:
        if (r.status_code not in self.accept) if self.accept is not None else not 200 <= r.status_code < 300:
            if 300 <= r.status_code < 400:
                raise self.redirected(r)
            raise_error(r, self.method, self.url)
        try:
            return self.read(r)
        except (ValueError, LookupError, TypeError) as e:  # not JSON, or JSON of another shape: not this API's answer
            kind = r.headers.get("content-type", "no Content-Type")
            raise ApiError(f"{self.method} {self.url} answered HTTP {r.status_code} with a body this client cannot "
                           f"read ({kind}: {r.text[:100]!r}); is the base URL a recsys server?",
                           code="bad_response", status=r.status_code) from e

    def redirected(self, r: httpx.Response) -> ApiError:
        """A 3xx as an error: following it could turn a write into a GET (301/302/303) or send it where no recsys
        answers (a proxy's http -> https), and a write's empty body would then read as success."""
        where = r.headers.get("location")
        to = f"to {where}" if where else "with no Location"
        return ApiError(f"{self.method} {self.url} was redirected (HTTP {r.status_code}) {to}; nothing was done. "
                        "Point the client's base URL at the address the recsys server answers on",
                        code="redirect", status=r.status_code)


def _error_classes() -> dict[tuple[str, int], type[RecsysError]]:
    # by code and status: ``encoder`` is EncoderError at 422 and EncoderStorageError at 503
    out: dict[tuple[str, int], type[RecsysError]] = {}
    for obj in vars(_errors).values():
        if isinstance(obj, type) and issubclass(obj, RecsysError):
            out.setdefault((obj.code, obj.status), obj)
    return out


_BY_CODE = _error_classes()


@dataclass(frozen=True)
class Problem:
    """An error answer's code, message, request id and (for a 422) the offending fields."""

    code: str
    message: str
    request_id: str | None = None
    details: list[Any] | None = None


def error_body(r: httpx.Response) -> Problem | None:
    """An error answer from ``{"error": {...}}`` or, from other servers, a plain RFC 9457 problem
    (``code``/``detail``); None when the body has no code (a proxy's page, FastAPI's ``{"detail": ...}``)."""
    try:
        body = r.json()
        err = body["error"] if isinstance(body.get("error"), dict) else body
        details = err.get("details")
        return Problem(str(err["code"]), str(err.get("message") or err.get("detail") or ""), err.get("request_id"),
                       details if isinstance(details, list) else None)
    except Exception:
        return None


def _all_fields(message: str, details: list[Any] | None) -> str:
    """A 422's message naming every offending field where there are several (the server's names the first)."""
    parts = []
    for d in details or ():
        if isinstance(d, dict):
            where = ".".join(str(p) for p in d.get("loc") or ())
            parts.append(f"{where}: {d.get('msg', 'invalid')}" if where else str(d.get("msg", "invalid")))
    return f"{len(parts)} problems: " + "; ".join(parts) if len(parts) > 1 else message


def shown(url: object) -> str:
    """``url`` for a message: without the ``user:password@`` a URL may carry."""
    return re.sub(r"^([^/]*//)?[^/@]*@", r"\1", str(url))


def _sent_to(r: httpx.Response, url: str) -> str:
    """The full URL ``r`` answered (base URL and path), else the call's path."""
    try:
        return shown(r.request.url.copy_with(query=None))
    except RuntimeError:  # a response made without a request (tests)
        return url


def not_recsys(r: httpx.Response, method: str, url: str) -> ApiError:
    """An error answer without a recsys error code: something in between (a proxy, a load balancer) answered."""
    kind = r.headers.get("content-type", "no Content-Type")
    excerpt = " ".join(r.text[:300].split())[:150]
    return ApiError(f"{method} {url} answered HTTP {r.status_code} from something that is not the recsys server "
                    f"({kind}: {excerpt!r}); is there a proxy or load balancer between you and the server, and is "
                    "the recsys server running behind it?", code="bad_response", status=r.status_code)


def raise_error(r: httpx.Response, method: str = "", url: str = "") -> None:
    """Raise the server's error as its :class:`RecsysError` subclass (matched by code and status), else ApiError.
    Each carries ``request_id``; a ValidationFailed the offending fields (``details``); RateLimited, StoreBusy and
    StoreUnavailable the server's ``retry_after`` (seconds, rounded up)."""
    problem = error_body(r)
    if problem is None:
        raise not_recsys(r, method, url)
    cls = _BY_CODE.get((problem.code, r.status_code))
    if cls is None:
        raise ApiError(problem.message, code=problem.code, status=r.status_code, request_id=problem.request_id)
    wait = retry_after(r.headers.get("retry-after"))
    # rounded up: a caller that waits retry_after seconds must not come back early
    seconds = None if wait is None else math.ceil(wait)
    message = problem.message
    if problem.code == "not_found" and message == "Not Found":  # the server's word for a path no route has
        message = f"{method} {_sent_to(r, url)} answered 404 Not Found: no route of the server has that path; is the " \
                  "client's base URL the server's address (without /v1)?"
    if issubclass(cls, ValidationFailed):
        message = _all_fields(message, problem.details)
    elif issubclass(cls, _errors.StoreUnavailable) and seconds is not None:
        message = f"{message} (the server asks to come back in {seconds} s)"
    exc = cls(message)
    if isinstance(exc, _errors.RateLimited):
        exc.retry_after = exc.retry_after if seconds is None else seconds
    elif isinstance(exc, _errors.StoreUnavailable):
        exc.retry_after = seconds
    if isinstance(exc, ValidationFailed):
        exc.details = problem.details
    exc.request_id = problem.request_id
    raise exc
