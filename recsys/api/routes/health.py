"""Liveness, readiness, Prometheus metrics and the loaded generations.

``/readyz`` needs no key, so it must not be a way to make the database work at will: each client address gets at
most LIVE_PINGS live pings per READY_WINDOW_S, and concurrent probes share one ping in flight. Past that it answers
from the last check (the refresh task pings every ``api.refresh_seconds``): a probe is always answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from recsys.api.deps import MetricsKey, ReadKey
from recsys.api.errors import public_message, public_status, redact
from recsys.api.metrics import CONTENT_TYPE
from recsys.api.schemas import Health, Readiness
from recsys.errors import SchemaBehind, StoreDenied

router = APIRouter(tags=["operations"])
LIVE_PINGS = 5
READY_WINDOW_S = 10.0
_ADDRESSES = 4096
"""Client addresses whose recent pings are remembered (least recently seen forgotten first)."""


class ReadyProbe:
    """Which ``/readyz`` calls ping the database live (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._pings: OrderedDict[str, deque[float]] = OrderedDict()
        self._inflight: asyncio.Future[bool] | None = None

    def _may_ping(self, client: str) -> bool:
        now = self.clock()
        times = self._pings.pop(client, None) or deque(maxlen=LIVE_PINGS)
        while times and now - times[0] >= READY_WINDOW_S:
            times.popleft()
        self._pings[client] = times
        if len(self._pings) > _ADDRESSES:
            self._pings.popitem(last=False)
        if len(times) >= LIVE_PINGS:
            return False
        times.append(now)
        return True

    async def store_ok(self, runtime: Any, client: str) -> bool:
        """Whether the store answers: pinged now, or the last check's answer for an address past its pings."""
        if not self._may_ping(client):
            return bool(runtime.store_ok)
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._ping(runtime))
        return await asyncio.shield(self._inflight)  # a caller that goes away does not cancel the others' ping

    async def _ping(self, runtime: Any) -> bool:
        try:
            runtime.store_ok = await run_in_threadpool(runtime.ping)  # bounded by the store's read timeout
            return bool(runtime.store_ok)
        finally:
            self._inflight = None


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Readiness,
            summary="Readiness: store reachable and an index generation loaded; `not_served` lists what is off",
            responses={503: {"model": Readiness, "description": "not ready (Retry-After says when to ask again)"}})
async def readyz(request: Request) -> Any:
    runtime = request.app.state.runtime
    probe = getattr(request.app.state, "ready_probe", None)
    if probe is None:
        probe = request.app.state.ready_probe = ReadyProbe()
    # the store live (within the address's pings); generations come from the background task
    await probe.store_ok(runtime, request.client.host if request.client else "")
    st = public_status(runtime.status)
    ranker = st.get("ranker_error") or (_no_ranker(runtime.recommender, st) if runtime.store_ok else None)
    body = Readiness(ready=runtime.ready, store=runtime.store_ok, index_generation=_s(st.get("index_generation")),
                     ranker_version=_s(st.get("ranker_version")), encoder_id=_s(st.get("encoder_id")),
                     not_served=[str(x) for x in st.get("not_served") or ()],
                     reason=_s((runtime.schema_error and SchemaBehind.public)
                               or (runtime.store_mismatch and redact(runtime.store_mismatch))
                               or (runtime.store_denied and public_message(StoreDenied(runtime.store_denied)))
                               or "; ".join(str(r) for r in (st.get("reason"), ranker) if r)
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
    return {**public_status(runtime.status), "ready": runtime.ready, "store": runtime.store_ok}


def _no_ranker(rec: Any, st: dict[str, Any]) -> str | None:
    """Why recommendations are not served when no ranker was ever trained (no ``ranker_error``): the words of their
    own 503 (``Generations.no_ranker``)."""
    generations = getattr(rec, "generations", None)  # a recommender without one (the API's test fake) says nothing
    # With no index loaded, the index's own reason says why nothing is served.
    if generations is None or st.get("index_generation") is None or "recommendations" not in (
            st.get("not_served") or ()):
        return None
    return public_message(generations.no_ranker())


def _s(v: Any) -> str | None:
    return None if v is None else str(v)
