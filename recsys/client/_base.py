"""What the sync and async clients share: result types, the retry policy and reading error answers. Each endpoint is
a :class:`Call` (the request to send and how to read the answer, built in :mod:`recsys.client._calls`), so both
clients speak the API through one definition of it."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from recsys import errors as _errors
from recsys.errors import RecsysError

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
    The httpx error is the ``__cause__``."""

    code, status = "unreachable", 503


def unreachable(method: str, url: str, base_url: httpx.URL, e: httpx.TransportError, tries: int) -> Unreachable:
    """httpx's transport error as :class:`Unreachable`, saying what to check."""
    if isinstance(e, httpx.TimeoutException):
        return Unreachable(f"{method} {url} timed out ({type(e).__name__}): is the server at {base_url} overloaded? "
                           "A longer Client(timeout=...) waits more")
    after = f" after {tries} tries" if tries > 1 else ""
    return Unreachable(f"{method} {url} got no answer{after} ({type(e).__name__}: {e}); is the recsys server "
                       f"running at {base_url}?")


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
    A refused connection (the server restarting) is tried again after the doubling backoff, within the same budget.
    ``Retry(attempts=1)`` turns retries off. ``sleep`` / ``asleep`` are for tests."""

    attempts: int = 4
    max_wait_s: float = 30.0
    backoff_s: float = 0.5
    statuses: frozenset[int] = frozenset({429, 503})
    codes: frozenset[str] = frozenset({"rate_limited", "store_down", "store_busy", "unavailable"})
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay(self, response: httpx.Response, attempt: int, waited: float) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None when ``response`` is final."""
        if response.status_code not in self.statuses or attempt >= self.attempts:
            return None
        problem = error_body(response)
        if problem is not None and problem[0] not in self.codes:
            return None
        wait = retry_after(response.headers.get("retry-after"))
        return self._within(self.backoff_s * 2 ** (attempt - 1) if wait is None else wait, waited)

    def delay_after(self, error: httpx.TransportError, attempt: int, waited: float) -> float | None:
        """Seconds to wait before try ``attempt + 1`` after ``error``, or None when it is final. Only a connection
        that was never made is tried again: nothing was sent, so even a POST cannot be applied twice. A timeout or
        a dropped connection may come after the server acted on the request: final."""
        if not isinstance(error, httpx.ConnectError) or attempt >= self.attempts:
            return None
        return self._within(self.backoff_s * 2 ** (attempt - 1), waited)

    def _within(self, wait: float, waited: float) -> float | None:
        return wait if waited + wait <= self.max_wait_s else None


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Call(Generic[T]):
    """One endpoint call: the request, and how to read the answer (``accept``: statuses that are answers, not
    errors; None means any 2xx). A 3xx is never an answer: the clients send with ``follow_redirects=False``."""

    method: str
    url: str
    read: Callable[[httpx.Response], T]
    kwargs: dict[str, Any] = field(default_factory=dict)
    accept: tuple[int, ...] | None = None
    retry: bool = True

    def result(self, r: httpx.Response) -> T:
        if (r.status_code not in self.accept) if self.accept is not None else not 200 <= r.status_code < 300:
            if 300 <= r.status_code < 400:
                raise self.redirected(r)
            raise_error(r)
        try:
            return self.read(r)
        except (ValueError, KeyError, TypeError) as e:  # not JSON, or JSON of another shape: not this API's answer
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


def _error_classes() -> dict[str, type[RecsysError]]:
    out: dict[str, type[RecsysError]] = {}
    for obj in vars(_errors).values():
        if isinstance(obj, type) and issubclass(obj, RecsysError):
            out.setdefault(obj.code, obj)
    return out


_BY_CODE = _error_classes()


def error_body(r: httpx.Response) -> tuple[str, str, str | None] | None:
    """An error answer's code, message and request id, from ``{"error": {...}}`` or, from other servers, a plain
    RFC 9457 problem (``code``/``detail``); None when the body has no code (a proxy's page)."""
    try:
        body = r.json()
        err = body["error"] if isinstance(body.get("error"), dict) else body
        return str(err["code"]), str(err.get("message") or err.get("detail") or ""), err.get("request_id")
    except Exception:
        return None


def raise_error(r: httpx.Response) -> None:
    """Raise the server's error as its :class:`RecsysError` subclass (matched by code and status), else ApiError."""
    code, message, rid = error_body(r) or ("http", f"HTTP {r.status_code}: {r.text[:200]}", None)
    cls = _BY_CODE.get(code)
    if cls is not None and cls.status == r.status_code:
        exc = cls(message)
        if isinstance(exc, _errors.RateLimited):
            wait = retry_after(r.headers.get("retry-after"))
            # rounded up: a caller that waits retry_after seconds must not come back early
            exc.retry_after = exc.retry_after if wait is None else math.ceil(wait)
        exc.request_id = rid  # type: ignore[attr-defined]
        raise exc
    raise ApiError(message, code=code, status=r.status_code, request_id=rid)
