"""Each endpoint of the API as a :class:`~recsys.client._base.Call`: the request to send and how to read the answer.
The sync and async clients only send them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

from recsys.client._base import Call, EventResult, Page, Result

FilterLike = Mapping[str, Any] | None
Ids = str | Iterable[str]
"""Item ids: a single str is one id (never its characters)."""
Examples = Mapping[str, float] | str | Iterable[str]
"""Examples of "more like these": {item_id: weight}, or ids (weight 1), or a single id."""
SearchMode = Literal["hybrid", "vector", "lexical"]
When = datetime | str | None
"""A time the server reads as ISO 8601 (a naive one is UTC)."""

_EVENT_FIELDS = frozenset(EventResult.__dataclass_fields__)


def _json(r: httpx.Response) -> Any:
    return r.json()


def _page(r: httpx.Response) -> Page:
    body = r.json()
    return Page(items=[Result.from_json(it) for it in body["items"]], meta=body.get("meta") or {},
                debug=body.get("debug"))


def _q(segment: str) -> str:
    # an empty id would make the path another route's (``DELETE /v1/items/`` is redirected, not an item)
    if not segment:
        raise ValueError("an id may not be empty")
    return quote(segment, safe="")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def ids(value: Ids) -> list[str]:
    """Item ids as a list: a str is one id, where ``list()`` would send its characters as ids."""
    return [value] if isinstance(value, str) else list(value)


def _weights(w: Examples) -> dict[str, float]:
    if isinstance(w, Mapping):
        return {str(k): float(v) for k, v in w.items()}
    return {str(i): 1.0 for i in ids(w)}


def _time(when: When) -> str | None:
    return when.isoformat() if isinstance(when, datetime) else when


def _event(e: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(e)
    ts = out.get("timestamp")
    if ts is not None and hasattr(ts, "isoformat"):
        out["timestamp"] = ts.isoformat()
    return out


def rules(boosts: Mapping[str, float] | None, bury: Ids, pins: Mapping[str, int] | None,
          exploration: float | None) -> dict[str, Any]:
    """The business rules of a personal or session list as body fields: empty ones are left out, but an
    exploration of 0 is sent (it turns the variant's exploration off)."""
    return _drop_none({"boosts": dict(boosts or {}) or None, "bury": ids(bury) or None,
                       "pins": dict(pins or {}) or None, "exploration": exploration})


# -- operations -------------------------------------------------------------------------------------------------
def health() -> Call[bool]:
    # a probe: says how the server is now, so nothing is retried
    return Call("GET", "/healthz", lambda r: r.status_code == 200, accept=tuple(range(100, 600)), retry=False)


def ready() -> Call[dict[str, Any]]:
    return Call("GET", "/readyz", _json, accept=(200, 503), retry=False)


def get(url: str) -> Call[Any]:
    return Call("GET", url, _json)


def feedback_report(since: When) -> Call[dict[str, Any]]:
    return Call("GET", "/v1/feedback/report", _json, {"params": _drop_none({"since": _time(since)})})


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda r: r.text)


def experiments() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/v1/experiments", lambda r: list(r.json()["experiments"]))


def experiment(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/experiments/{_q(name)}", _json)


def experiment_report(name: str, since: When) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/experiments/{_q(name)}/report", _json, {"params": _drop_none({"since": _time(since)})})


# -- items, users and events ------------------------------------------------------------------------------------
def get_item(item_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/items/{_q(item_id)}", _json)


def put_item(item_id: str, item: Mapping[str, Any]) -> Call[dict[str, Any]]:
    body = {k: v for k, v in item.items() if k != "item_id"}
    return Call("PUT", f"/v1/items/{_q(item_id)}", _json, {"json": body})


def upsert_items(items: Iterable[Mapping[str, Any]]) -> Call[list[dict[str, Any]]]:
    return Call("POST", "/v1/items", lambda r: r.json()["results"], {"json": {"items": list(items)}})


def delete_item(item_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/items/{_q(item_id)}", lambda r: None)


def delete_user(user_id: str) -> Call[int]:
    return Call("DELETE", f"/v1/users/{_q(user_id)}", lambda r: int(r.json()["events"]))


def send_events(events: Iterable[Mapping[str, Any]]) -> Call[list[EventResult]]:
    # fields a later server adds are left out, so this client keeps working against it
    return Call("POST", "/v1/events", lambda r: [EventResult(**{k: v for k, v in x.items() if k in _EVENT_FIELDS})
                                                 for x in r.json()["results"]],
                {"json": {"events": [_event(e) for e in events]}})


# -- queries ----------------------------------------------------------------------------------------------------
def recommend(user_id: str, k: int, filter: FilterLike, exclude: Ids, diversity: float | None, explain: bool,
              debug: bool, cursor: str | None, exclude_shown_hours: float | None, now: When,
              list_rules: dict[str, Any]) -> Call[Page]:
    body = _drop_none({"k": k, "filter": filter, "exclude": ids(exclude), "diversity": diversity,
                       "explain": explain, "debug": debug, "cursor": cursor, "now": _time(now),
                       "exclude_shown_hours": exclude_shown_hours, **list_rules})
    return Call("POST", f"/v1/users/{_q(user_id)}/recommendations", _page, {"json": body})


def buy_again(user_id: str, k: int, now: When) -> Call[Page]:
    params = _drop_none({"k": k, "now": _time(now)})
    return Call("GET", f"/v1/users/{_q(user_id)}/buy-again", _page, {"params": params})


def recommend_session(events: Iterable[Mapping[str, Any]], k: int, filter: FilterLike, exclude: Ids,
                      diversity: float | None, explain: bool, cursor: str | None,
                      list_rules: dict[str, Any]) -> Call[Page]:
    body = _drop_none({"events": [_event(e) for e in events], "k": k, "filter": filter, "exclude": ids(exclude),
                       "diversity": diversity, "explain": explain, "cursor": cursor, **list_rules})
    return Call("POST", "/v1/sessions/recommendations", _page, {"json": body})


def similar(item_id: str, k: int, modality: str | None, filter: FilterLike, exclude: Ids,
            user_id: str | None) -> Call[Page]:
    body = _drop_none({"k": k, "modality": modality, "filter": filter, "exclude": ids(exclude), "user_id": user_id})
    return Call("POST", f"/v1/items/{_q(item_id)}/similar", _page, {"json": body})


def search_text(query: str, k: int, modality: str | None, filter: FilterLike, exclude: Ids, user_id: str | None,
                mode: SearchMode | None, lexical_weight: float | None) -> Call[Page]:
    body = _drop_none({"query": query, "k": k, "modality": modality, "filter": filter, "exclude": ids(exclude),
                       "user_id": user_id, "mode": mode, "lexical_weight": lexical_weight})
    return Call("POST", "/v1/search/text", _page, {"json": body})


def search_image(image: bytes | str | Path, k: int, modality: str | None, filter: FilterLike,
                 user_id: str | None) -> Call[Page]:
    data = Path(image).read_bytes() if isinstance(image, str | Path) else image
    form: dict[str, Any] = _drop_none({"k": str(k), "modality": modality, "user_id": user_id})
    if filter:
        form["filter"] = json.dumps(dict(filter))
    return Call("POST", "/v1/search/image", _page, {"files": {"image": ("query", data)}, "data": form})


def more_like_these(positive: Examples, negative: Examples, k: int, filter: FilterLike, exclude: Ids) -> Call[Page]:
    body = _drop_none({"positive": _weights(positive), "negative": _weights(negative), "k": k, "filter": filter,
                       "exclude": ids(exclude)})
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
