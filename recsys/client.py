"""A typed Python client for the recsys HTTP API (httpx).

    from recsys.client import Client

    with Client("http://127.0.0.1:8000", api_key="rsk_...") as c:
        c.send_events([{"user_id": "u1", "item_id": "a1", "type": "like", "event_id": "e-1"}])
        page = c.recommend("u1", k=10, filter={"categories": ["shoes"], "price_max": 80}, explain=True)
        for r in page.items:
            print(r.item_id, r.score, r.sources)

Errors come back as the server's :class:`~recsys.errors.RecsysError` subclass (``UnknownItem``,
``StoreUnavailable``, ...) matched by the stable error code; an unknown code raises :class:`ApiError`. Pass
``http=`` to use your own ``httpx.Client`` (e.g. FastAPI's ``TestClient``, or one with a ``MockTransport``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from recsys import errors as _errors
from recsys.errors import RecsysError

__all__ = ["ApiError", "Client", "EventResult", "Page", "Result"]

FilterLike = Mapping[str, Any] | None


class ApiError(RecsysError):
    """An error answer whose code this client does not know; ``status`` is the HTTP status."""

    def __init__(self, message: str, *, code: str, status: int, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.request_id = request_id


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


@dataclass(frozen=True)
class EventResult:
    index: int
    status: str
    event_id: int | None = None
    error: str | None = None


def _error_classes() -> dict[str, type[RecsysError]]:
    out: dict[str, type[RecsysError]] = {}
    for obj in vars(_errors).values():
        if isinstance(obj, type) and issubclass(obj, RecsysError):
            out.setdefault(obj.code, obj)
    return out


_BY_CODE = _error_classes()


class Client:
    """Synchronous client; one method per endpoint. Use as a context manager or call :meth:`close`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = 30.0, http: httpx.Client | None = None) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._own = http is None
        self._http = http if http is not None else httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = headers

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._http.close()

    # -- operations ---------------------------------------------------------------------------------------------
    def health(self) -> bool:
        return self._http.get("/healthz").status_code == 200

    def ready(self) -> dict[str, Any]:
        """The readiness body (``ready`` is False while the store is down or no index is loaded)."""
        r = self._http.get("/readyz")
        if r.status_code not in (200, 503):
            self._raise(r)
        return r.json()  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self._json("GET", "/v1/status")  # type: ignore[no-any-return]

    def metrics(self) -> str:
        return self._request("GET", "/metrics").text

    # -- items --------------------------------------------------------------------------------------------------
    def get_item(self, item_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/items/{_q(item_id)}")  # type: ignore[no-any-return]

    def put_item(self, item_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in item.items() if k != "item_id"}
        return self._json("PUT", f"/v1/items/{_q(item_id)}", json=body)  # type: ignore[no-any-return]

    def upsert_items(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self._json("POST", "/v1/items", json={"items": list(items)})["results"]  # type: ignore[no-any-return]

    def delete_item(self, item_id: str) -> None:
        self._json("DELETE", f"/v1/items/{_q(item_id)}")

    # -- events -------------------------------------------------------------------------------------------------
    def send_events(self, events: Iterable[Mapping[str, Any]]) -> list[EventResult]:
        """Events (user_id, item_id, type, value?, timestamp?, event_id?); committed when this returns."""
        body = self._json("POST", "/v1/events", json={"events": [_jsonable(e) for e in events]})
        return [EventResult(**r) for r in body["results"]]

    # -- queries ------------------------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 20, *, filter: FilterLike = None, exclude: Sequence[str] = (),
                  diversity: float | None = None, explain: bool = False, debug: bool = False) -> Page:
        body = _drop_none({"k": k, "filter": filter, "exclude": list(exclude), "diversity": diversity,
                           "explain": explain, "debug": debug})
        return self._page("POST", f"/v1/users/{_q(user_id)}/recommendations", json=body)

    def recommend_session(self, events: Sequence[Mapping[str, Any]], k: int = 20, *, filter: FilterLike = None,
                          exclude: Sequence[str] = (), diversity: float | None = None,
                          explain: bool = False) -> Page:
        body = _drop_none({"events": [_jsonable(e) for e in events], "k": k, "filter": filter,
                           "exclude": list(exclude), "diversity": diversity, "explain": explain})
        return self._page("POST", "/v1/sessions/recommendations", json=body)

    def similar(self, item_id: str, k: int = 20, *, modality: str = "fused", filter: FilterLike = None,
                exclude: Sequence[str] = ()) -> Page:
        body = _drop_none({"k": k, "modality": modality, "filter": filter, "exclude": list(exclude)})
        return self._page("POST", f"/v1/items/{_q(item_id)}/similar", json=body)

    def search_text(self, query: str, k: int = 20, *, modality: str = "fused", filter: FilterLike = None,
                    exclude: Sequence[str] = ()) -> Page:
        body = _drop_none({"query": query, "k": k, "modality": modality, "filter": filter,
                           "exclude": list(exclude)})
        return self._page("POST", "/v1/search/text", json=body)

    def search_image(self, image: bytes | str | Path, k: int = 20, *, modality: str = "image",
                     filter: FilterLike = None) -> Page:
        data = Path(image).read_bytes() if isinstance(image, str | Path) else image
        form: dict[str, Any] = {"k": str(k), "modality": modality}
        if filter:
            import json

            form["filter"] = json.dumps(dict(filter))
        return self._page("POST", "/v1/search/image", files={"image": ("query", data)}, data=form)

    def more_like_these(self, positive: Mapping[str, float] | Sequence[str],
                        negative: Mapping[str, float] | Sequence[str] = (), k: int = 20, *,
                        filter: FilterLike = None, exclude: Sequence[str] = ()) -> Page:
        body = _drop_none({"positive": _weights(positive), "negative": _weights(negative), "k": k,
                           "filter": filter, "exclude": list(exclude)})
        return self._page("POST", "/v1/more-like-these", json=body)

    def trending(self, k: int = 20, *, filter: FilterLike = None) -> Page:
        params: dict[str, Any] = {"k": k}
        for key, value in dict(filter or {}).items():
            if key == "categories":
                params["category"] = list(value)
            elif key == "attributes":
                params["attr"] = [f"{a}:{v}" for a, v in value.items()]
            elif value is not None:
                params[key] = str(value).lower() if isinstance(value, bool) else value
        return self._page("GET", "/v1/trending", params=params)

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        r = self._http.request(method, url, headers=self._headers, **kwargs)
        if r.status_code >= 400:
            self._raise(r)
        return r

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._request(method, url, **kwargs).json()

    def _page(self, method: str, url: str, **kwargs: Any) -> Page:
        body = self._json(method, url, **kwargs)
        return Page(items=[Result(**{k: v for k, v in it.items() if k in Result.__dataclass_fields__})
                           for it in body["items"]], meta=body.get("meta") or {}, debug=body.get("debug"))

    @staticmethod
    def _raise(r: httpx.Response) -> None:
        try:
            err = r.json()["error"]
            code, message, rid = str(err["code"]), str(err["message"]), err.get("request_id")
        except Exception:
            code, message, rid = "http", f"HTTP {r.status_code}: {r.text[:200]}", None
        cls = _BY_CODE.get(code)
        if cls is not None and cls.status == r.status_code:
            exc = cls(message)
            exc.request_id = rid  # type: ignore[attr-defined]
            raise exc
        raise ApiError(message, code=code, status=r.status_code, request_id=rid)


def _q(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _weights(w: Mapping[str, float] | Sequence[str]) -> dict[str, float]:
    return {str(k): float(v) for k, v in w.items()} if isinstance(w, Mapping) else {str(i): 1.0 for i in w}


def _jsonable(e: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(e)
    ts = out.get("timestamp")
    if ts is not None and hasattr(ts, "isoformat"):
        out["timestamp"] = ts.isoformat()
    return out
