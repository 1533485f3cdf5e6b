"""Events: a batch in, a result per event; each stored event is committed before the answer."""

from __future__ import annotations

from fastapi import APIRouter, Request

from recsys.api.deps import EventsKey, RecommenderDep
from recsys.api.schemas import EventBatch, EventBatchResult, EventIn, EventResultOut, each_valid

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", response_model=EventBatchResult,
             summary="Ingest events; idempotent on event_id; each result says stored, duplicate or error")
def post_events(request: Request, batch: EventBatch, rec: RecommenderDep, _key: EventsKey) -> EventBatchResult:
    good, bad = each_valid(EventIn, batch.events)
    stored = rec.catalogue.ingest_events([e.model_dump(exclude_none=True) for _, e in good]) if good else []
    out = [EventResultOut(index=i, status="error", error=msg) for i, msg in bad.items()]
    out += [EventResultOut(index=i, status=r.status, event_id=r.event_id, error=r.error, warning=r.warning)
            for (i, _), r in zip(good, stored, strict=True)]
    out.sort(key=lambda r: r.index)
    counts = {s: sum(1 for r in out if r.status == s) for s in ("stored", "duplicate", "error")}
    metric = request.app.state.metrics.events
    for s, n in counts.items():
        if n:
            metric.labels(s).inc(n)
    return EventBatchResult(results=out, stored=counts["stored"], duplicates=counts["duplicate"],
                            errors=counts["error"])

