"""Liveness, readiness, Prometheus metrics and the loaded generations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from recsys.api.deps import MetricsKey, ReadKey
from recsys.api.metrics import CONTENT_TYPE
from recsys.api.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Readiness,
            summary="Readiness: store reachable and an index generation loaded; `not_served` lists what is off",
            responses={503: {"model": Readiness, "description": "not ready (Retry-After says when to ask again)"}})
async def readyz(request: Request) -> Any:
    runtime = request.app.state.runtime
    runtime.store_ok = await run_in_threadpool(runtime.ping)  # live; generations come from the background task
    st = runtime.status
    body = Readiness(ready=runtime.ready, store=runtime.store_ok, index_generation=_s(st.get("index_generation")),
                     ranker_version=_s(st.get("ranker_version")), encoder_id=_s(st.get("encoder_id")),
                     not_served=[str(x) for x in st.get("not_served") or ()],
                     reason=_s(st.get("ranker_error") or st.get("reason")
                               or (None if runtime.store_ok else "the database is unreachable")))
    if body.ready:
        return body
    retry = str(request.app.state.settings.api.retry_after_seconds)
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": retry})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request, _key: MetricsKey) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/v1/status", summary="The loaded index generation, ranker version and encoder")
async def status(request: Request, _key: ReadKey) -> dict[str, Any]:
    runtime = request.app.state.runtime
    return {**{k: v for k, v in runtime.status.items()}, "ready": runtime.ready, "store": runtime.store_ok}


def _s(v: Any) -> str | None:
    return None if v is None else str(v)
