"""The query string of the hot GET recommendations route, validated in one pydantic call.

FastAPI handles each declared query parameter on its own, in Python, on every request: for the personal list's 17
parameters that was about a third of a cached answer's CPU (profiled under load). Here the route declares none; the
query string is read into :class:`RecommendQuery` at once (the same constraints, errors answered like FastAPI's, 422
with each parameter named) and the parameters are documented in the OpenAPI schema from the same model.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any, TypeVar, get_args, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys.api.routes.feeds import CURSOR_DOC
from recsys.api.schemas import NOW_DOC, CursorText, Now, ShownHours
from recsys.store.limits import MAX_K, MAX_LIST

BOOST_DOC = "KEY=B: a business boost, KEY an item id or category:NAME, B in units of the score spread (repeatable)"
BURY_DOC = "an item id or category:NAME put below every other item (repeatable)"
PIN_DOC = "ITEM=POSITION: the item at that 1-based position, tagged 'pinned' (repeatable)"
EXPLORE_DOC = "share of the list sampled from new and long-tail items, tagged 'exploration'"
Q = TypeVar("Q", bound=BaseModel)


class RecommendQuery(BaseModel):
    """``GET /v1/users/{id}/recommendations``'s query parameters (filters, list options, business rules)."""

    model_config = ConfigDict(extra="ignore")

    category: list[str] | None = Field(None, max_length=MAX_LIST, description="keep items of these categories")
    price_min: float | None = Field(None, allow_inf_nan=False)
    price_max: float | None = Field(None, allow_inf_nan=False)
    in_stock: bool | None = None
    attr: list[str] | None = Field(None, max_length=100, description="attribute filters as KEY:VALUE; a key "
                                                                     "repeated matches any of its values")
    k: int = Field(20, ge=1, le=MAX_K)
    exclude: list[str] | None = Field(None, max_length=MAX_LIST)
    diversity: float | None = Field(None, ge=0.0, le=1.0)
    explain: bool = False
    debug: bool = False
    now: Now | None = Field(None, description=NOW_DOC)
    cursor: CursorText | None = Field(None, description=CURSOR_DOC)
    exclude_shown_hours: ShownHours | None = None
    boost: list[str] | None = Field(None, max_length=1000, description=BOOST_DOC)
    bury: list[str] | None = Field(None, max_length=1000, description=BURY_DOC)
    pin: list[str] | None = Field(None, max_length=100, description=PIN_DOC)
    exploration: float | None = Field(None, ge=0.0, le=1.0, description=EXPLORE_DOC)


@functools.cache
def _repeated(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` taken from repeated parameters (its lists)."""
    return frozenset(n for n, f in model.model_fields.items()
                     if any(get_origin(a) is list for a in (f.annotation, *get_args(f.annotation))))


def parse_query(request: Request, model: type[Q]) -> Q:
    """``model`` from the request's query string (repeated parameters for list fields); a 422 like FastAPI's."""
    repeated = _repeated(model)
    qp = request.query_params
    refuse_unknown(qp, model.model_fields)
    data: dict[str, Any] = {}
    for name in qp:
        if name in model.model_fields:
            data[name] = qp.getlist(name) if name in repeated else qp[name]
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("query", *err["loc"])} for err in e.errors()]) from None


def openapi_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model``'s fields as optional query parameters."""
    schema = model.model_json_schema()
    params = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        desc = prop.pop("description", None)
        prop.pop("title", None)
        params.append({"name": name, "in": "query", "required": False, "schema": prop,
                       **({"description": desc} if desc else {})})
    return {"parameters": params}


def refuse_unknown(qp: Any, names: Collection[str], takes: str | None = None) -> None:
    """A 422 naming each query parameter not in ``names``: a typo'd one (``?categroy=``) would silently serve an
    unfiltered list. ``_``-names stay free for cache busters. ``takes`` words what the route takes instead of
    listing ``names``."""
    unknown = [n for n in qp if n not in names and not n.startswith("_")]
    if unknown:
        takes = takes or ", ".join(names) or "none"
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", n), "input": qp[n][:100],
                                       "msg": f"unknown parameter; this route takes {takes}"} for n in unknown])


async def known_query(request: Request) -> None:
    """A route dependency (``dependencies=[Depends(known_query)]``): :func:`refuse_unknown` against the query
    parameters the route and its dependencies declare (read from FastAPI's model once per route)."""
    if not request.query_params:
        return
    route = request.scope["route"]
    names = getattr(route, "known_query_names", None)  # kept on the route: computed once, gone with it
    if names is None:
        names = tuple(dict.fromkeys(_query_names(route.dependant)))
        route.known_query_names = names
    refuse_unknown(request.query_params, names)


def _query_names(dependant: Any) -> list[str]:
    return [p.alias for p in dependant.query_params] + [n for d in dependant.dependencies for n in _query_names(d)]
