"""Items: read, create or replace (one or in bulk), delete; similar items."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator

from recsys.api.deps import AdminKey, ReadKey, RecommenderDep
from recsys.api.errors import redact
from recsys.api.ids import PathId, shown_id, trimmed_id
from recsys.api.media import check_image_field, media_roots, public_item
from recsys.api.routes._common import ids_param, query_filter, results, to_item_filter, unknown_filter_values
from recsys.api.routes.experiments import assignment
from recsys.api.routes.query import known_query
from recsys.api.schemas import (
    USER_DOC,
    Deleted,
    Filter,
    ItemBatch,
    ItemBatchResult,
    ItemIn,
    ItemOut,
    ItemPut,
    Modality,
    Results,
    SimilarRequest,
    each_valid,
)
from recsys.catalogue import NotPublished
from recsys.errors import RecsysError, UnknownItem, ValidationFailed
from recsys.store.items import deleted_message
from recsys.store.limits import MAX_ID, MAX_K, MAX_LIST, PRINTABLE

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/items", tags=["items"])

ItemId = PathId


@router.get("/{item_id}", response_model=ItemOut,
            summary="One item with its media (as URLs: a local image is served by this server) and tags")
def get_item(item_id: ItemId, rec: RecommenderDep, _key: ReadKey) -> Any:
    details = rec.get_item(item_id)
    if details.get("deleted"):  # gone for shoppers at once, as from every list (`recsys items show` still has it)
        raise UnknownItem(deleted_message(item_id))
    return public_item(details)


@router.put("/{item_id}", response_model=ItemOut,
            summary="Create or replace one item (a local image must lie under the media roots)")
def put_item(request: Request, item_id: ItemId, item: ItemPut, rec: RecommenderDep, _key: AdminKey) -> Any:
    check_image_field(item.image, media_roots(request.app.state.settings))
    result = _check(rec.catalogue.upsert_items([{"item_id": item_id, **_plain(item, replace=True)}])[0])
    try:
        return public_item(rec.get_item(item_id))
    except RecsysError as e:  # answered as the error it is (a 503 asks for a retry: a PUT again replaces the same)
        log.warning("item %s was stored (%s) but reading it back failed (%s): %s", item_id,
                    result.get("status", "stored"), e.code, e.message)
        raise


@router.post("", response_model=ItemBatchResult,
             summary="Create or update many items (fields a record leaves out keep their stored values); a result "
                     "per item")
def upsert_items(request: Request, batch: ItemBatch, rec: RecommenderDep, _key: AdminKey) -> ItemBatchResult:
    roots = media_roots(request.app.state.settings)
    results: list[dict[str, Any] | None] = [None] * len(batch.items)
    valid, bad = each_valid(ItemIn, batch.items)
    for i, msg in bad.items():  # refused alone: the rest of the batch is stored
        raw = batch.items[i]
        given = raw.get("item_id") if isinstance(raw, dict) else None
        results[i] = {"index": i, "item_id": shown_id(given), "status": "error", "error": msg}
    good: list[tuple[int, ItemIn]] = []
    for i, it in valid:
        try:
            check_image_field(it.image, roots)
            good.append((i, it))
        except ValidationFailed as e:
            results[i] = {"index": i, "item_id": it.item_id, "status": "error", "error": e.message}
    try:
        stored = rec.catalogue.upsert_items([_plain(it) for _, it in good]) if good else []
    except NotPublished as e:  # stored, then publishing failed (a full disk): results with a warning, not a 503
        stored = [{**r, "warning": redact(r["warning"])} if "warning" in r else r for r in e.results]
    for (i, _), r in zip(good, stored, strict=True):
        results[i] = {**dict(r), "index": i}
    return ItemBatchResult(results=[r for r in results if r is not None])


@router.delete("/{item_id}", response_model=Deleted, summary="Delete an item (it stops being returned at once)")
def delete_item(item_id: ItemId, rec: RecommenderDep, _key: AdminKey) -> Deleted:
    rec.catalogue.delete_item(item_id)
    return Deleted(item_id=item_id)


@router.get("/{item_id}/similar", response_model=Results, dependencies=[Depends(known_query)],
            summary="Items like this one")
def similar(request: Request, item_id: ItemId, rec: RecommenderDep, _key: ReadKey,
            f: Annotated[Filter | None, Depends(query_filter)],
            k: Annotated[int, Query(ge=1, le=MAX_K)] = 20, modality: Modality | None = None,
            exclude: Annotated[list[str] | None, Query(max_length=MAX_LIST)] = None,
            user_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID, pattern=PRINTABLE,
                                                 description=USER_DOC), AfterValidator(trimmed_id)] = None) -> Any:
    assigned = assignment(request, "similar", user_id)
    chosen = modality or (assigned.variant.modality if assigned is not None else None) or "fused"
    item_filter = to_item_filter(f)
    items = rec.similar(item_id, k, modality=chosen, filter=item_filter, exclude=ids_param(exclude))
    return results(request, items, user_id=user_id, assigned=assigned,
                   unknown_values=unknown_filter_values(rec, item_filter))


@router.post("/{item_id}/similar", response_model=Results, summary="Items like this one (filters in the body)")
def similar_post(request: Request, item_id: ItemId, body: SimilarRequest, rec: RecommenderDep,
                 _key: ReadKey) -> Any:
    assigned = assignment(request, "similar", body.user_id)
    chosen = body.modality or (assigned.variant.modality if assigned is not None else None) or "fused"
    item_filter = to_item_filter(body.filter)
    items = rec.similar(item_id, body.k, modality=chosen, filter=item_filter, exclude=body.exclude)
    return results(request, items, user_id=body.user_id, assigned=assigned,
                   unknown_values=unknown_filter_values(rec, item_filter))


def _plain(item: ItemPut, *, replace: bool = False) -> dict[str, Any]:
    """The item as the importer's canonical fields: all of them to replace it (PUT), else only those the request
    gave, so an existing item keeps the rest (a bulk price update does not blank titles and photos)."""
    return item.model_dump(exclude_unset=not replace)


def _check(result: Any) -> dict[str, Any]:
    r = dict(result) if isinstance(result, dict) else {"result": result}
    if r.get("status") == "error" or r.get("error"):
        raise ValidationFailed(str(r.get("error") or "the item was refused"))
    return r

