"""Feedback: the online report of what served lists led to (attribution by ``recommendation_id``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from recsys.api.deps import AdminKey, RecommenderDep
from recsys.api.feedback_schemas import FeedbackReport
from recsys.api.routes.query import known_query

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])


@router.get("/report", response_model=FeedbackReport, dependencies=[Depends(known_query)],
            summary="Lists served and the events attributed to them, per source, ranker version and index generation",
            description="An event is attributed when it carries the `recommendation_id` of a served list. CTR and "
                        "conversion rate are over impressions (or, where none were posted, the items the lists "
                        "showed), with 95% Wilson intervals.")
def feedback_report(rec: RecommenderDep, _key: AdminKey,
                    since: Annotated[str | None, Query(max_length=64, description="only lists served from this time "
                                                   "(ISO 8601, naive = UTC; or unix seconds, as the CLI)")] = None,
                    ) -> FeedbackReport:
    from recsys.feedback import feedback_report as report
    from recsys.feedback.report import parse_since

    return FeedbackReport.model_validate(report(rec.store, since=parse_since(since) if since is not None else None))

