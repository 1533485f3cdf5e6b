"""Recommendations: for a stored user, for a posted session, "more like these", trending."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from recsys.api.deps import AdminKey, ReadKey, RecommenderDep, RecommenderLike
from recsys.api.ids import PathId
from recsys.api.routes._common import (
    aunknown_filter_values,
    debug_timings,
    ids_param,
    query_filter,
    results,
    to_item_filter,
    unknown_filter_values,
)
from recsys.api.routes.experiments import assignment, list_rules, variant_items
from recsys.api.routes.feeds import left_out
from recsys.api.routes.query import RecommendQuery, known_query, openapi_parameters, parse_query
from recsys.api.schemas import (
    NOW_DOC,
    Filter,
    MoreLikeTheseRequest,
    Now,
    RecommendRequest,
    Results,
    SessionRequest,
    UserDeleted,
)
from recsys.errors import ValidationFailed
from recsys.experiments import variant_ranker_id
from recsys.experiments.items import unknown_categories, unknown_keys
from recsys.serving.generations import UnknownRanker
from recsys.serving.rules import parse_pairs
from recsys.store.limits import MAX_K

router = APIRouter(prefix="/v1", tags=["recommendations"])


UserId = PathId


async def _recommend(request: Request, rec: RecommenderDep, user_id: str, body: RecommendRequest) -> Any:
    # Cache-Control: no-cache asks for a list ranked now, not one from the service's result cache
    fresh = "no-cache" in request.headers.get("cache-control", "").lower()
    start = time.perf_counter()
    page, exclude = await left_out(request, body, user_id)
    assigned = assignment(request, "recommendations", user_id)
    rules, diversity = list_rules(body, assigned)
    if rules is not None and page is not None:
        rules = rules.on_page(page.offset)
    item_filter = to_item_filter(body.filter)
    try:
        items, timings = await rec.arecommend(user_id, body.k, filter=item_filter, exclude=exclude,
                                              diversity=diversity, explain=body.explain, fresh=fresh,
                                              now=body.now, rules=rules)
    except UnknownRanker as e:  # the variant's generation went away (or no longer fits) after start-up
        if assigned is None:
            raise
        raise UnknownRanker(f"experiment {assigned.experiment!r}, variant {assigned.variant.name!r}: "
                            f"{e.message}") from None
    debug = debug_timings(timings, start) if body.debug else None
    # a typo'd item id or category acts on nothing: say so
    named = [*dict(body.pins or {}), *dict(body.boosts or {}), *(body.bury or ()), *variant_items(request, assigned)]
    unknown = await asyncio.to_thread(unknown_keys, named, rec.catalogue.unknown_items,
                                      functools.partial(unknown_categories, rec.catalogue)) if named else None
    return results(request, items, debug=debug, user_id=user_id, page=page, k=body.k, assigned=assigned,
                   ranker=variant_ranker_id(assigned), unknown_items=unknown or None,
                   unknown_values=await aunknown_filter_values(rec, item_filter))


# async: a cached answer never leaves the event loop; the service sends ranking to a worker thread itself. The query
# string is read in one validation (recsys/api/routes/query.py), documented from the same model.
@router.get("/users/{user_id}/recommendations", response_model=Results,
            summary="Personalised recommendations (an unknown user gets trending items, tagged 'popular')",
            openapi_extra=openapi_parameters(RecommendQuery))
async def recommend(request: Request, user_id: UserId, rec: RecommenderDep, _key: ReadKey) -> Any:
    q = parse_query(request, RecommendQuery)
    f = await query_filter(q.category, q.price_min, q.price_max, q.in_stock, q.attr)
    body = RecommendRequest.model_construct(k=q.k, filter=f, exclude=ids_param(q.exclude), diversity=q.diversity,
                                            explain=q.explain, debug=q.debug, now=q.now, cursor=q.cursor,
                                            exclude_shown_hours=q.exclude_shown_hours,
                                            boosts=parse_pairs(q.boost or (), "boost", float),
                                            bury=ids_param(q.bury, "bury"), pins=parse_pairs(q.pin or (), "pin", int),
                                            exploration=q.exploration)
    return await _recommend(request, rec, user_id, body)


@router.get("/users/{user_id}/buy-again", response_model=Results, dependencies=[Depends(known_query)],
            summary="The user's own items most likely wanted again (kept apart from the personal list)")
def buy_again(request: Request, user_id: UserId, rec: RecommenderDep, _key: ReadKey,
              k: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
              now: Annotated[Now | None, Query(description=NOW_DOC)] = None) -> Any:
    return results(request, rec.buy_again(user_id, k, now=now), user_id=user_id)


@router.post("/users/{user_id}/recommendations", response_model=Results,
             summary="Personalised recommendations (filters in the body)")
async def recommend_post(request: Request, user_id: UserId, body: RecommendRequest, rec: RecommenderDep,
                         _key: ReadKey) -> Any:
    return await _recommend(request, rec, user_id, body)


# async: a cursor's feed may be looked for again while another process writes it, awaited without a thread
@router.post("/sessions/recommendations", response_model=Results,
             summary="Recommendations for an anonymous session from posted events (nothing is stored)")
async def recommend_session(request: Request, body: SessionRequest, rec: RecommenderDep, _key: ReadKey) -> Any:
    if body.now is not None or body.exclude_shown_hours:  # accepted by the shared body, meaningless here
        raise ValidationFailed("a session's list takes neither `now` (it is ranked on the clock with its posted "
                               "events, as a stored user's is) nor `exclude_shown_hours` (no stored user was shown "
                               "anything); use `exclude` or a cursor")
    start = time.perf_counter()
    page, exclude = await left_out(request, body, None)
    items, unknown = await run_in_threadpool(_session_list, rec, body, exclude, page.offset if page else 0)
    debug = debug_timings({}, start) if body.debug else None  # a session's list is never cached: its whole time
    return results(request, items, debug=debug, page=page, k=body.k, unknown_items=unknown,
                   unknown_values=await aunknown_filter_values(rec, to_item_filter(body.filter)))


def _session_list(rec: RecommenderLike, body: SessionRequest, exclude: list[str],
                  offset: int) -> tuple[list[Any], list[str]]:
    """(the session's ranked list, its posted items the catalogue lacks), in a worker thread; ``offset``: the items
    the feed's earlier pages showed."""
    events = [e.model_dump(exclude_none=True) for e in body.events]
    rules, _ = list_rules(body, None)
    rules = rules.on_page(offset) if rules is not None else None
    items = rec.recommend_for_events(events, body.k, filter=to_item_filter(body.filter), exclude=exclude,
                                     diversity=body.diversity, explain=body.explain, rules=rules)
    return items, rec.catalogue.unknown_items([str(e["item_id"]) for e in events])


@router.post("/more-like-these", response_model=Results,
             summary="Items like the weighted positive examples and unlike the negative ones")
def more_like_these(request: Request, body: MoreLikeTheseRequest, rec: RecommenderDep, _key: ReadKey) -> Any:
    item_filter = to_item_filter(body.filter)
    items = rec.more_like_these(dict(body.positive), dict(body.negative), body.k, filter=item_filter,
                                exclude=body.exclude)
    return results(request, items, unknown_values=unknown_filter_values(rec, item_filter))


@router.get("/trending", response_model=Results, dependencies=[Depends(known_query)],
            summary="Trending items in the recent window")
def trending(request: Request, rec: RecommenderDep, _key: ReadKey, f: Annotated[Filter | None, Depends(query_filter)],
             k: Annotated[int, Query(ge=1, le=MAX_K)] = 20) -> Any:
    item_filter = to_item_filter(f)
    return results(request, rec.trending(k, filter=item_filter),
                   unknown_values=unknown_filter_values(rec, item_filter))


@router.delete("/users/{user_id}", response_model=UserDeleted,
               summary="Delete a user, all their events and the lists served to them (their next recommendations "
                       "are a new user's)")
def delete_user(request: Request, user_id: UserId, rec: RecommenderDep, _key: AdminKey) -> UserDeleted:
    # sync: flushing the list writer and erase_user wait (writer lingers, about a second), off the event loop
    served = request.app.state.served
    served.flush(timeout_s=5.0)  # their lists still queued are written first, so the delete takes them too
    events = rec.catalogue.delete_user(user_id)
    # lists made for them until now: never written here, deleted when another worker or replica writes them; and
    # forgotten here (other processes remember only lists they have not written yet)
    served.erase_user(user_id)
    return UserDeleted(user_id=user_id, events=events)
