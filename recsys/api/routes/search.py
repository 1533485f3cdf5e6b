"""Search by text and by an uploaded image."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from pydantic import AfterValidator, ValidationError
from starlette.concurrency import run_in_threadpool

from recsys.api.deps import ReadKey, RecommenderDep, SettingsDep
from recsys.api.ids import trimmed_id
from recsys.api.limits import check_image
from recsys.api.routes._common import (
    aunknown_filter_values,
    ids_param,
    query_filter,
    results,
    to_item_filter,
    unknown_filter_values,
)
from recsys.api.routes.experiments import assignment
from recsys.api.routes.query import known_query, refuse_unknown
from recsys.api.schemas import (
    MODE_DOC,
    USER_DOC,
    Filter,
    LexicalWeight,
    Modality,
    Results,
    SearchMode,
    SearchTextRequest,
)
from recsys.errors import PayloadTooLarge, ValidationFailed
from recsys.store.limits import MAX_ID, MAX_K, MAX_LIST, MAX_QUERY, PRINTABLE

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.get("/text", response_model=Results, dependencies=[Depends(known_query)],
            summary="Items matching a text query",
            description="Keyword and vector results fused by reciprocal rank (`mode=hybrid`, the default with the "
                        "fused vectors), or one side alone (`mode=vector`, the default with `modality=text|image`; "
                        "`mode=lexical`); a query that is an item id puts that item first. Results carry their "
                        "sources: `lexical`, `search` (vectors), `id`, and `generated` beside `lexical` when the "
                        "query's words are only in the item's description generated from its image.")
def search_text(request: Request, rec: RecommenderDep, _key: ReadKey,
                f: Annotated[Filter | None, Depends(query_filter)],
                q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY, pattern=r"^[^\x00]+$")],
                k: Annotated[int, Query(ge=1, le=MAX_K)] = 20, modality: Modality | None = None,
                exclude: Annotated[list[str] | None, Query(max_length=MAX_LIST)] = None,
                mode: Annotated[SearchMode | None, Query(description=MODE_DOC)] = None,
                lexical_weight: Annotated[LexicalWeight | None, Query()] = None,
                user_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID, pattern=PRINTABLE,
                                                     description=USER_DOC), AfterValidator(trimmed_id)] = None,
                ) -> Any:
    assigned = assignment(request, "search", user_id)
    chosen = modality or (assigned.variant.modality if assigned is not None else None) or "fused"
    item_filter = to_item_filter(f)
    items = rec.search_text(q, k, modality=chosen, filter=item_filter, exclude=ids_param(exclude),
                            mode=mode, lexical_weight=lexical_weight)
    return results(request, items, user_id=user_id, assigned=assigned,
                   unknown_values=unknown_filter_values(rec, item_filter))


@router.post("/text", response_model=Results, summary="Items matching a text query (filters in the body)")
def search_text_post(request: Request, body: SearchTextRequest, rec: RecommenderDep, _key: ReadKey) -> Any:
    assigned = assignment(request, "search", body.user_id)
    chosen = body.modality or (assigned.variant.modality if assigned is not None else None) or "fused"
    item_filter = to_item_filter(body.filter)
    items = rec.search_text(body.query, body.k, modality=chosen, filter=item_filter,
                            exclude=body.exclude, mode=body.mode, lexical_weight=body.lexical_weight)
    return results(request, items, user_id=body.user_id, assigned=assigned,
                   unknown_values=unknown_filter_values(rec, item_filter))


IMAGE_OPTIONS = "k, modality, filter (a Filter object as JSON) and user_id"


async def form_fields_only(request: Request) -> None:
    """A route dependency: the image search takes its options as form fields, so a query parameter (``?k=6``)
    would be ignored and serve a list not asked for; it is refused like a GET route's unknown one (422)."""
    if request.query_params:
        refuse_unknown(request.query_params, (), takes=f"no query parameters: send {IMAGE_OPTIONS} as multipart "
                                                      "form fields beside `image`")


@router.post("/image", response_model=Results, dependencies=[Depends(form_fields_only)],
             summary="Items looking like an uploaded image (multipart field `image`; JPEG, PNG, WebP, GIF, BMP)",
             description=f"The options ({IMAGE_OPTIONS}) are multipart form fields; a query parameter is refused "
                         "(422).")
async def search_image(request: Request, rec: RecommenderDep, settings: SettingsDep, _key: ReadKey,
                       image: Annotated[UploadFile, File(description="the query image")],
                       k: Annotated[int, Form(ge=1, le=MAX_K)] = 20,
                       modality: Annotated[Modality | None, Form(description="default: the variant's, else "
                                                                             "image")] = None,
                       filter: Annotated[str | None, Form(max_length=100_000,
                                                          description="a Filter object as JSON")] = None,
                       user_id: Annotated[str | None, Form(min_length=1, max_length=MAX_ID,
                                                           pattern=PRINTABLE, description=USER_DOC),
                                          AfterValidator(trimmed_id)] = None) -> Any:
    limits = settings.api
    data = await image.read(limits.max_image_bytes + 1)
    if len(data) > limits.max_image_bytes:
        raise PayloadTooLarge(f"the uploaded image is over the limit of {limits.max_image_bytes} bytes")
    check_image(data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels,
                formats=limits.image_formats)
    f = None
    if filter:
        try:
            f = Filter.model_validate_json(filter)
        except ValidationError as e:
            raise ValidationFailed(f"filter: {e.errors()[0]['msg']}") from None
    assigned = assignment(request, "search", user_id)  # the same experiment as text search
    chosen = modality or (assigned.variant.modality if assigned is not None else None) or "image"
    item_filter = to_item_filter(f)
    items = await run_in_threadpool(rec.search_image, data, k, modality=chosen, filter=item_filter)
    return results(request, items, user_id=user_id, assigned=assigned,
                   unknown_values=await aunknown_filter_values(rec, item_filter))
