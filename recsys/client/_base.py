"""What the sync and async clients share: result types, the retry policy, and each endpoint as a :class:`Call` (the
request to send and how to read the answer), so both clients speak the API through one definition of it."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from recsys import errors as _errors
from recsys.errors import RecsysError

T = TypeVar("T")
FilterLike = Mapping[str, Any] | None


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


@contextlib.contextmanager
def reaching(method: str, url: str, base_url: httpx.URL) -> Iterator[None]:
    """Turn httpx's transport errors (raised inside) into :class:`Unreachable`, saying what to check."""
    try:
        yield
    except httpx.TimeoutException as e:
        raise Unreachable(f"{method} {url} timed out ({type(e).__name__}): is the server at {base_url} overloaded? "
                          "A longer Client(timeout=...) waits more") from e
    except httpx.TransportError as e:
        raise Unreachable(f"{method} {url} got no answer ({type(e).__name__}: {e}); is the recsys server running "
                          f"at {base_url}?") from e


@dataclass(frozen=True)
class Result:
    item_id: str
    score: float
    sources: list[str] = field(default_factory=list)
    explanation: dict[str, Any] | None = None


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
        if wait is None:
            wait = self.backoff_s * 2 ** (attempt - 1)
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
    errors; None means any status under 400)."""

    method: str
    url: str
    read: Callable[[httpx.Response], T]
    kwargs: dict[str, Any] = field(default_factory=dict)
    accept: tuple[int, ...] | None = None
    retry: bool = True

    def result(self, r: httpx.Response) -> T:
        if (r.status_code not in self.accept) if self.accept is not None else r.status_code >= 400:
            raise_error(r)
        try:
            return self.read(r)
        except (ValueError, KeyError, TypeError) as e:  # not JSON, or JSON of another shape: not this API's answer
            kind = r.headers.get("content-type", "no Content-Type")
            raise ApiError(f"{self.method} {self.url} answered HTTP {r.status_code} with a body this client cannot "
                           f"read ({kind}: {r.text[:100]!r}); is the base URL a recsys server?",
                           code="bad_response", status=r.status_code) from e


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


# -- the endpoints ----------------------------------------------------------------------------------------------
def _json(r: httpx.Response) -> Any:
    return r.json()


def _page(r: httpx.Response) -> Page:
    body = r.json()
    return Page(items=[Result(**{k: v for k, v in it.items() if k in Result.__dataclass_fields__})
                       for it in body["items"]], meta=body.get("meta") or {}, debug=body.get("debug"))


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _weights(w: Mapping[str, float] | Sequence[str]) -> dict[str, float]:
    return {str(k): float(v) for k, v in w.items()} if isinstance(w, Mapping) else {str(i): 1.0 for i in w}


def _event(e: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(e)
    ts = out.get("timestamp")
    if ts is not None and hasattr(ts, "isoformat"):
        out["timestamp"] = ts.isoformat()
    return out


def health() -> Call[bool]:
    return Call("GET", "/healthz", lambda r: r.status_code == 200, accept=tuple(range(100, 600)), retry=False)


def ready() -> Call[dict[str, Any]]:
    return Call("GET", "/readyz", _json, accept=(200, 503), retry=False)


def get(url: str) -> Call[Any]:
    return Call("GET", url, _json)


def feedback_report(since: str | None) -> Call[dict[str, Any]]:
    return Call("GET", "/v1/feedback/report", _json, {"params": _drop_none({"since": since})})


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda r: r.text)


def get_item(item_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/items/{_q(item_id)}", _json)


def put_item(item_id: str, item: Mapping[str, Any]) -> Call[dict[str, Any]]:
    body = {k: v for k, v in item.items() if k != "item_id"}
    return Call("PUT", f"/v1/items/{_q(item_id)}", _json, {"json": body})


def upsert_items(items: Sequence[Mapping[str, Any]]) -> Call[list[dict[str, Any]]]:
    return Call("POST", "/v1/items", lambda r: r.json()["results"], {"json": {"items": list(items)}})


def delete_item(item_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/items/{_q(item_id)}", lambda r: None)


def send_events(events: Iterable[Mapping[str, Any]]) -> Call[list[EventResult]]:
    # fields a later server adds are left out, so this client keeps working against it
    return Call("POST", "/v1/events", lambda r: [EventResult(**{k: v for k, v in x.items() if k in _EVENT_FIELDS})
                                                 for x in r.json()["results"]],
                {"json": {"events": [_event(e) for e in events]}})


def recommend(user_id: str, k: int, filter: FilterLike, exclude: Sequence[str], diversity: float | None,
              explain: bool, debug: bool, cursor: str | None = None,
              exclude_shown_hours: float | None = None, rules: Mapping[str, Any] | None = None) -> Call[Page]:
    """``rules``: boosts, bury, pins, exploration (the request body's fields; empty ones are left out, but an
    exploration of 0 is sent: it turns the variant's exploration off)."""
    body = _drop_none({"k": k, "filter": filter, "exclude": list(exclude), "diversity": diversity,
                       "explain": explain, "debug": debug, "cursor": cursor,
                       "exclude_shown_hours": exclude_shown_hours,
                       **{key: v for key, v in (rules or {}).items() if v or key == "exploration"}})
    return Call("POST", f"/v1/users/{_q(user_id)}/recommendations", _page, {"json": body})


def recommend_session(events: Sequence[Mapping[str, Any]], k: int, filter: FilterLike, exclude: Sequence[str],
                      diversity: float | None, explain: bool) -> Call[Page]:
    body = _drop_none({"events": [_event(e) for e in events], "k": k, "filter": filter, "exclude": list(exclude),
                       "diversity": diversity, "explain": explain})
    return Call("POST", "/v1/sessions/recommendations", _page, {"json": body})


def similar(item_id: str, k: int, modality: str | None, filter: FilterLike, exclude: Sequence[str],
            user_id: str | None = None) -> Call[Page]:
    body = _drop_none({"k": k, "modality": modality, "filter": filter, "exclude": list(exclude), "user_id": user_id})
    return Call("POST", f"/v1/items/{_q(item_id)}/similar", _page, {"json": body})


def search_text(query: str, k: int, modality: str | None, filter: FilterLike, exclude: Sequence[str],
                user_id: str | None = None) -> Call[Page]:
    body = _drop_none({"query": query, "k": k, "modality": modality, "filter": filter, "exclude": list(exclude),
                       "user_id": user_id})
    return Call("POST", "/v1/search/text", _page, {"json": body})


def search_image(image: bytes | str | Path, k: int, modality: str | None, filter: FilterLike,
                 user_id: str | None = None) -> Call[Page]:
    data = Path(image).read_bytes() if isinstance(image, str | Path) else image
    form: dict[str, Any] = _drop_none({"k": str(k), "modality": modality, "user_id": user_id})
    if filter:
        form["filter"] = json.dumps(dict(filter))
    return Call("POST", "/v1/search/image", _page, {"files": {"image": ("query", data)}, "data": form})


def more_like_these(positive: Mapping[str, float] | Sequence[str], negative: Mapping[str, float] | Sequence[str],
                    k: int, filter: FilterLike, exclude: Sequence[str]) -> Call[Page]:
    body = _drop_none({"positive": _weights(positive), "negative": _weights(negative), "k": k, "filter": filter,
                       "exclude": list(exclude)})
    return Call("POST", "/v1/more-like-these", _page, {"json": body})


def _each(value: Any) -> list[Any]:
    """A filter value as the values of a repeated query parameter: a list matches any of them."""
    return list(value) if isinstance(value, list | tuple | set | frozenset) else [value]


def trending(k: int, filter: FilterLike) -> Call[Page]:
    """The POST bodies' filter as GET query parameters: ``attributes`` and ``categories`` as one repeated
    ``attr=KEY:VALUE`` / ``category=NAME`` per value."""
    params: dict[str, Any] = {"k": k}
    for key, value in dict(filter or {}).items():
        if value is None:
            continue
        if key == "categories":
            params["category"] = _each(value)
        elif key == "attributes":
            params["attr"] = [f"{a}:{x}" for a, v in value.items() for x in _each(v)]
        else:
            params[key] = str(value).lower() if isinstance(value, bool) else value
    return Call("GET", "/v1/trending", _page, {"params": params})
