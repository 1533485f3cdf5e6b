"""Each endpoint of the API as a :class:`~recsys.client._base.Call`: the request to send and how to read the answer.
The sync and async clients only send them."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from recsys.client._base import Call, EventResult, InvalidArgument, Page, Result

R = TypeVar("R")
FilterLike = Mapping[str, Any] | None
Ids = str | Iterable[str] | None
"""Item ids: a single str is one id (never its characters); None is none."""
Examples = Mapping[str, float] | str | Iterable[str]
"""Examples of "more like these": {item_id: weight}, or ids (weight 1), or a single id."""
SearchMode = Literal["hybrid", "vector", "lexical"]
When = datetime | str | None
"""A time the server reads as ISO 8601 (a naive one is UTC)."""

_EVENT_FIELDS = frozenset(EventResult.__dataclass_fields__)
MAX_BATCH = 1000
"""The most records the API takes in one batch: a longer batch is sent in calls of at most this many."""
MAX_BODY_BYTES = 8_000_000
"""The most bytes of records one batch call carries: under the server's default body limit
(``RECSYS_API__MAX_BODY_BYTES``, 10,000,000; a larger body is refused whole with a 413), with room to spare."""
_DOT_SEGMENTS = frozenset({".", ".."})


def _json(r: httpx.Response) -> Any:
    return r.json()


def _page(r: httpx.Response) -> Page:
    body = r.json()
    return Page(items=[Result.from_json(it) for it in body["items"]], meta=body.get("meta") or {},
                debug=body.get("debug"))


def _q(segment: str) -> str:
    # an empty id would make the path another route's (``DELETE /v1/items/`` is redirected, not an item); "a/b",
    # "." and ".." would be read as other paths (the server never stores such ids)
    if not segment:
        raise InvalidArgument("an id may not be empty")
    if "/" in segment or segment in _DOT_SEGMENTS:
        raise InvalidArgument(f"an id may not contain '/' or be '.' or '..': items and users are addressed by id in "
                              f"URL paths (got {segment!r})")
    return quote(segment, safe="")


def plain(value: Any, where: str = "") -> Any:
    """``value`` as JSON the API reads: numpy scalars and arrays as Python numbers and lists, sets as lists,
    datetimes as ISO 8601. NaN, infinity or a value JSON cannot carry raises InvalidArgument naming the field."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{where or 'value'}: {value} is not a number the API takes (JSON has no NaN or "
                                  "infinity); leave the field out where there is no value")
        return value
    if type(value).__module__.split(".")[0] == "numpy" and hasattr(value, "tolist"):
        return plain(value.tolist(), where)
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise InvalidArgument(f"{where or 'value'}: a {type(value).__name__} is not a JSON value")


def _body(d: dict[str, Any]) -> dict[str, Any]:
    return plain(_drop_none(d))  # type: ignore[no-any-return]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def ids(value: Ids) -> list[str]:
    """Item ids as a list: a str is one id, where ``list()`` would send its characters as ids."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _weights(w: Examples) -> dict[str, float]:
    if isinstance(w, Mapping):
        return {str(k): float(v) for k, v in w.items()}
    return {str(i): 1.0 for i in ids(w)}


def _time(when: When) -> str | None:
    return when.isoformat() if isinstance(when, datetime) else when


@dataclass(frozen=True)
class Batch(Generic[R]):
    """A batch write as calls of at most :data:`MAX_BATCH` records each, and the results of the records refused
    before sending (NaN, infinity...). Every result's index is the record's position in the caller's batch."""

    calls: list[Call[list[R]]]
    refused: list[R]
    index: Callable[[R], int]
    firsts: list[int]
    """The position of each call's first record."""

    def merge(self, parts: Iterable[list[R]]) -> list[R]:
        return sorted([*self.refused, *(r for part in parts for r in part)], key=self.index)

    def note(self, done: int) -> str:
        """Said with an error raised by call ``done`` (0-based) after earlier calls were answered."""
        return (f"this batch was sent in calls of at most {MAX_BATCH} records and {MAX_BODY_BYTES:,} bytes: the "
                f"records before position {self.firsts[done]} were sent and answered before this error")


def _size(record: Any) -> int:
    """An upper bound of ``record``'s bytes in a request body: json.dumps' defaults (ASCII escapes, spaced
    separators) are never shorter than what any httpx sends (httpx 0.28 and later: compact UTF-8)."""
    return len(json.dumps(record)) + 1  # and its comma


def _chunks(sent: list[tuple[int, Any, int]]) -> list[list[tuple[int, Any, int]]]:
    """(position, record, size) in order, cut into calls of at most MAX_BATCH records and MAX_BODY_BYTES."""
    chunks: list[list[tuple[int, Any, int]]] = []
    total = 0
    for rec in sent:
        if not chunks or len(chunks[-1]) == MAX_BATCH or total + rec[2] > MAX_BODY_BYTES:
            chunks.append([])
            total = 0
        chunks[-1].append(rec)
        total += rec[2]
    return chunks


def _batch(records: Iterable[Any], refuse: Callable[[int, Any, str], R],
           call: Callable[[list[int], list[Any]], Call[list[R]]], index: Callable[[R], int]) -> Batch[R]:
    """Each record as JSON (refused alone, with the field named, where it cannot be), in calls of at most
    MAX_BATCH records and MAX_BODY_BYTES: a body over the server's limit was refused whole. A record over that on
    its own is refused alone, like one with NaN."""
    sent: list[tuple[int, Any, int]] = []
    refused: list[R] = []
    for i, rec in enumerate(records):
        try:
            body = plain(rec)
        except InvalidArgument as e:
            refused.append(refuse(i, rec, e.message))
            continue
        size = _size(body)
        if size > MAX_BODY_BYTES:
            refused.append(refuse(i, rec, f"the record is {size:,} bytes as JSON, over the {MAX_BODY_BYTES:,} bytes "
                                          "one call carries (the server refuses larger bodies): shorten its text"))
        else:
            sent.append((i, body, size))
    chunks = _chunks(sent)
    return Batch([call([i for i, _, _ in c], [r for _, r, _ in c]) for c in chunks], refused, index,
                 [c[0][0] for c in chunks])


def _at(positions: list[int], x: Mapping[str, Any], j: int) -> int:
    """A result's position in the caller's batch, from its index in the call."""
    return positions[int(x.get("index", j))]


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
    given = item.get("item_id")
    if given is not None and given != item_id:
        raise InvalidArgument(f"the item's item_id {given!r} is not the id it is put at ({item_id!r}): "
                              "PUT /v1/items/{id} writes the path's id; leave item_id out or make them equal")
    body = plain({k: v for k, v in item.items() if k != "item_id"})
    return Call("PUT", f"/v1/items/{_q(item_id)}", _json, {"json": body}, write=True)


def _item_results(positions: list[int]) -> Callable[[httpx.Response], list[dict[str, Any]]]:
    return lambda r: [{**x, "index": _at(positions, x, j)} for j, x in enumerate(r.json()["results"])]


def _refused_item(i: int, rec: Any, error: str) -> dict[str, Any]:
    given = rec.get("item_id") if isinstance(rec, Mapping) else None
    return {"index": i, "item_id": given if isinstance(given, str) else None, "status": "error", "error": error}


def upsert_items(items: Iterable[Mapping[str, Any]]) -> Batch[dict[str, Any]]:
    # upserts: sending one again does no harm
    return _batch(items, _refused_item,
                  lambda pos, recs: Call("POST", "/v1/items", _item_results(pos), {"json": {"items": recs}},
                                         write=True),
                  lambda r: int(r["index"]))


def delete_item(item_id: str) -> Call[None]:
    # idempotent: deleting an item again answers 200 (it stays marked deleted), so a dropped connection is retried
    return Call("DELETE", f"/v1/items/{_q(item_id)}", lambda r: None, write=True)


def delete_user(user_id: str) -> Call[int]:
    # not idempotent: a second delete answers 404, which would hide that the first one was done
    return Call("DELETE", f"/v1/users/{_q(user_id)}", lambda r: int(r.json()["events"]), write=True,
                idempotent=False)


def _event_results(positions: list[int]) -> Callable[[httpx.Response], list[EventResult]]:
    # fields a later server adds are left out, so this client keeps working against it
    return lambda r: [EventResult(**{**{k: v for k, v in x.items() if k in _EVENT_FIELDS},
                                     "index": _at(positions, x, j)}) for j, x in enumerate(r.json()["results"])]


def _events_call(positions: list[int], events: list[Any]) -> Call[list[EventResult]]:
    # stored once when sent twice only where every event has an event_id
    once = all(isinstance(e, Mapping) and e.get("event_id") is not None for e in events)
    return Call("POST", "/v1/events", _event_results(positions), {"json": {"events": events}}, write=True,
                idempotent=once)


def send_events(events: Iterable[Mapping[str, Any]]) -> Batch[EventResult]:
    return _batch(events, lambda i, rec, error: EventResult(i, "error", error=error), _events_call,
                  lambda r: r.index)


# -- queries ----------------------------------------------------------------------------------------------------
def recommend(user_id: str, k: int, filter: FilterLike, exclude: Ids, diversity: float | None, explain: bool,
              debug: bool, cursor: str | None, exclude_shown_hours: float | None, now: When,
              list_rules: dict[str, Any]) -> Call[Page]:
    body = _body({"k": k, "filter": filter, "exclude": ids(exclude), "diversity": diversity, "explain": explain,
                  "debug": debug, "cursor": cursor, "now": _time(now), "exclude_shown_hours": exclude_shown_hours,
                  **list_rules})
    return Call("POST", f"/v1/users/{_q(user_id)}/recommendations", _page, {"json": body})


def buy_again(user_id: str, k: int, now: When) -> Call[Page]:
    params = _drop_none({"k": k, "now": _time(now)})
    return Call("GET", f"/v1/users/{_q(user_id)}/buy-again", _page, {"params": params})


def recommend_session(events: Iterable[Mapping[str, Any]], k: int, filter: FilterLike, exclude: Ids,
                      diversity: float | None, explain: bool, cursor: str | None,
                      list_rules: dict[str, Any], debug: bool = False) -> Call[Page]:
    body = _body({"events": list(events), "k": k, "filter": filter, "exclude": ids(exclude), "diversity": diversity,
                  "explain": explain, "debug": debug, "cursor": cursor, **list_rules})
    return Call("POST", "/v1/sessions/recommendations", _page, {"json": body})


def similar(item_id: str, k: int, modality: str | None, filter: FilterLike, exclude: Ids,
            user_id: str | None) -> Call[Page]:
    body = _body({"k": k, "modality": modality, "filter": filter, "exclude": ids(exclude), "user_id": user_id})
    return Call("POST", f"/v1/items/{_q(item_id)}/similar", _page, {"json": body})


def search_text(query: str, k: int, modality: str | None, filter: FilterLike, exclude: Ids, user_id: str | None,
                mode: SearchMode | None, lexical_weight: float | None) -> Call[Page]:
    body = _body({"query": query, "k": k, "modality": modality, "filter": filter, "exclude": ids(exclude),
                  "user_id": user_id, "mode": mode, "lexical_weight": lexical_weight})
    return Call("POST", "/v1/search/text", _page, {"json": body})


def search_image(image: bytes | str | Path, k: int, modality: str | None, filter: FilterLike,
                 user_id: str | None) -> Call[Page]:
    data = Path(image).read_bytes() if isinstance(image, str | Path) else image
    form: dict[str, Any] = _drop_none({"k": str(k), "modality": modality, "user_id": user_id})
    if filter:
        form["filter"] = json.dumps(plain(dict(filter), "filter"))
    return Call("POST", "/v1/search/image", _page, {"files": {"image": ("query", data)}, "data": form})


def more_like_these(positive: Examples, negative: Examples, k: int, filter: FilterLike, exclude: Ids) -> Call[Page]:
    body = _body({"positive": _weights(positive), "negative": _weights(negative), "k": k, "filter": filter,
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
        value = plain(value, f"filter.{key}")
        if key == "categories":
            params["category"] = _each(value)
        elif key == "attributes":
            params["attr"] = [f"{a}:{x}" for a, v in value.items() for x in _each(v)]
        else:
            params[key] = str(value).lower() if isinstance(value, bool) else value
    return Call("GET", "/v1/trending", _page, {"params": params})
