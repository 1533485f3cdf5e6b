"""Helpers shared by the routers: filter conversion, query-string filters, result envelopes, debug timings."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import Query, Request, Response

from recsys.api.routes.feeds import cursor_key
from recsys.api.schemas import MAX_LIST, Filter
from recsys.errors import ValidationFailed
from recsys.feedback import Cursor, Served, new_recommendation_id
from recsys.serving.results import ScoredItem, result_object
from recsys.store.limits import MAX_ID


def to_item_filter(f: Filter | None) -> Any:
    """The service's :class:`recsys.index.ItemFilter` for a request filter (None when nothing is filtered)."""
    if f is None or f.is_empty():
        return None
    from recsys.index import ItemFilter

    return ItemFilter.of(categories=f.categories, price_min=f.price_min, price_max=f.price_max, in_stock=f.in_stock,
                         attributes=f.attributes)


MAX_UNKNOWN_VALUES = 20
"""The unknown filter values an answer lists (with their closest known ones; the schema's Meta says 20); the rest
are only counted."""


class UnknownValues(list[dict[str, Any]]):
    """The first MAX_UNKNOWN_VALUES unknown filter values, and in ``more`` how many others the filter named."""

    more: int = 0


def unknown_filter_values(rec: Any, f: Any) -> UnknownValues | None:
    """The category and attribute values of the item filter ``f`` that no served item has, with the closest known
    ones (:meth:`recsys.index.ItemFilter.unknown_values`): a typo'd value selects nothing, so the answer says so in
    ``meta.unknown_filter_values``. None when there are none, or ``rec`` serves no index metadata (a test double).
    The first MAX_UNKNOWN_VALUES only (``meta.unknown_filter_values_more`` counts the rest): a filter within the
    schema's limits may name 100,000 values, and listing each, compared for its closest, answered 6 MB slowly."""
    if not _names_values(f):
        return None
    meta = getattr(getattr(rec, "index", None), "meta", None)
    if meta is None:
        return None
    out = UnknownValues(f.unknown_values(meta, MAX_UNKNOWN_VALUES))
    if len(out) == MAX_UNKNOWN_VALUES:
        out.more = f.unknown_count(meta) - MAX_UNKNOWN_VALUES
    return out or None


async def aunknown_filter_values(rec: Any, f: Any) -> UnknownValues | None:
    """:func:`unknown_filter_values` off the event loop (coding a column the first time is a pass over the items)."""
    if not _names_values(f):  # most requests: no thread hop
        return None
    return await asyncio.to_thread(unknown_filter_values, rec, f)


def _names_values(f: Any) -> bool:
    """Whether the item filter ``f`` names category or attribute values (the ones that can be misspelt)."""
    return f is not None and (f.categories is not None or bool(f.attributes))


async def query_filter(
    category: Annotated[list[str] | None, Query(max_length=MAX_LIST, description="keep items of these categories")]
    = None,
    price_min: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    price_max: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    in_stock: bool | None = None,
    attr: Annotated[list[str] | None, Query(max_length=100, description="attribute filters as KEY:VALUE; a key "
                                                                         "repeated matches any of its values")] = None,
) -> Filter | None:
    """Filters from the query string of a GET request (async: pure CPU, no threadpool hop)."""
    attributes: dict[str, str | list[str]] | None = None
    if attr:
        values: dict[str, list[str]] = {}
        for a in attr:
            key, sep, value = a.partition(":")
            if not sep or not key:
                raise ValidationFailed(f"attr {a[:60]!r} is not KEY:VALUE")
            values.setdefault(key, []).append(value)
        attributes = {k: v[0] if len(v) == 1 else v for k, v in values.items()}
    if price_min is not None and price_max is not None and price_min > price_max:
        raise ValidationFailed("price_min is greater than price_max")
    for text in [*(category or []), *(a for a in attr or [])]:
        if "\x00" in text or len(text) > 400:
            raise ValidationFailed("a filter value has a NUL character or is over 400 characters")
    f = Filter.model_construct(categories=category, price_min=price_min, price_max=price_max, in_stock=in_stock,
                               attributes=attributes)
    return None if f.is_empty() else f


def results(request: Request, items: list[Any], *, debug: dict[str, float] | None = None, user_id: str | None = None,
            page: Cursor | None = None, k: int | None = None, assigned: Any = None, ranker: str | None = None,
            unknown_items: list[str] | None = None, unknown_values: list[dict[str, Any]] | None = None) -> Any:
    """The response envelope (the :class:`~recsys.api.schemas.Results` shape): results best first, the generation
    ids they came from, a fresh ``recommendation_id`` (the list is recorded by the background writer, see
    :mod:`recsys.feedback`), debug timings on request. Written here once, without a second validation pass; a
    :class:`~recsys.service.ScoredItem` brings its own memoised JSON, so a cached list stays cheap.

    A feed (``k`` given: personal and session lists) gets ``meta.next`` when it filled the page; ``page`` is the
    cursor this page was asked for, ``user_id`` whom the list was shown to; ``assigned`` the user's experiment and
    variant (:class:`recsys.experiments.Assignment`), put in ``meta`` and recorded with the list; ``ranker`` the
    id of the ranker generation that ranked it when not the served one (a variant's); ``unknown_items`` the
    posted items the list could not use; ``unknown_values`` the filter values no item has
    (:func:`unknown_filter_values`)."""
    status = request.app.state.runtime.status
    gen, ranker = _str(status.get("index_generation")), ranker or _str(status.get("ranker_version"))
    rid = new_recommendation_id()
    shown = tuple(it.item_id if isinstance(it, ScoredItem) else str(_field(it, "item_id")) for it in items)
    offset = page.offset if page is not None else 0
    experiment, variant = (assigned.experiment, assigned.variant.name) if assigned is not None else (None, None)
    log = getattr(request.app.state, "served", None)
    if log is not None:
        log.record(Served(rid, source_of(request), shown, user_id, page.feed_id if page is not None else None,
                          offset, gen, ranker, paged=k is not None, experiment=experiment, variant=variant))
    nxt = None
    if k is not None and shown and len(shown) >= k:
        nxt = Cursor(page.feed_id if page is not None else rid, offset + len(shown)).encode(cursor_key(request))
    meta = {"request_id": getattr(request.state, "request_id", None), "index_generation": gen,
            "ranker_version": ranker, "recommendation_id": rid, "next": nxt}
    if assigned is not None:
        meta.update(experiment=experiment, variant=variant)
    if unknown_items:
        meta["unknown_items"] = unknown_items
    if unknown_values:
        meta["unknown_filter_values"] = list(unknown_values)
        if more := getattr(unknown_values, "more", 0):  # an UnknownValues' values beyond the listed ones
            meta["unknown_filter_values_more"] = more
    rendered = ",".join(it.as_json if isinstance(it, ScoredItem) else _dumps(_result(it)) for it in items)
    timings = None if debug is None else {"timings_ms": debug}
    body = f'{{"items":[{rendered}],"meta":{_dumps(meta)},"debug":{_dumps(timings)}}}'
    return Response(body, media_type="application/json")


def source_of(request: Request) -> str:
    """The endpoint a list came from: the route's name (its operationId), a POST twin named like its GET."""
    route = request.scope.get("route")
    name = str(getattr(route, "name", "") or "unknown")
    return name.removesuffix("_post")


def _field(it: Any, name: str) -> Any:
    return it[name] if isinstance(it, dict) else getattr(it, name)


def _result(it: Any) -> dict[str, Any]:
    d = it if isinstance(it, dict) else vars(it) if hasattr(it, "__dict__") else dict(it)
    return result_object(d["item_id"], d["score"], d.get("sources"), d.get("explanation"))


def _dumps(v: Any) -> str:
    return json.dumps(v, default=str, allow_nan=False)


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def debug_timings(timings: dict[str, Any], start: float) -> dict[str, float]:
    """The debug field: the service's per-stage timings (ms, rounded) plus the total since ``start``."""
    clean = {str(k): round(float(v), 3) for k, v in timings.items() if isinstance(v, int | float)}
    clean["service_total"] = round((time.perf_counter() - start) * 1000, 3)
    return clean


def ids_param(values: list[str] | None, name: str = "exclude") -> list[str]:
    """Item ids from a repeated query parameter, each 1 to 128 characters without control characters, as in a POST
    body (``category:NAME`` keys of ``bury`` may be longer)."""
    out = []
    longest = MAX_ID if name == "exclude" else 400
    for v in values or ():
        if not v or len(v) > longest or any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValidationFailed(f"{name} holds item ids of 1 to {longest} characters, no control characters")
        out.append(v)
    return out
