"""Experiments (read-only: they are defined in configuration) and their reports; the rules a personal list is
ranked under (the request's business rules over the user's variant)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from recsys.api.deps import AdminKey, RecommenderDep
from recsys.api.experiment_schemas import ExperimentList, ExperimentOut, ExperimentReport
from recsys.api.routes.query import known_query
from recsys.api.schemas import RecommendRequest
from recsys.experiments import Assignment, Experiments
from recsys.serving.rules import NO_RULES, ListRules

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
SINCE_DOC = ("only lists served from this time (ISO 8601, naive = UTC; or unix seconds, as the CLI); default: the "
             "definition's started_at")


def experiments_of(request: Request) -> Experiments:
    return getattr(request.app.state, "experiments", None) or Experiments()


def assignment(request: Request, surface: str, user_id: str | None) -> Assignment | None:
    """The user's variant in the experiment running on ``surface`` (None: no experiment, or no user)."""
    return experiments_of(request).assign(surface, user_id)


def variant_items(request: Request, assigned: Assignment | None) -> list[str]:
    """The item ids and ``category:`` keys of the user's variant to name in ``meta.unknown_items`` if the catalogue
    lacks them (those it lacked at start-up: :class:`recsys.experiments.VariantItems`)."""
    items = getattr(request.app.state, "variant_items", None)
    return items.to_check(assigned) if items is not None and assigned is not None else []


def list_rules(body: RecommendRequest, assigned: Assignment | None) -> tuple[ListRules | None, float | None]:
    """(the rules, the diversity) of a personal list: the variant's, with what the request says on top."""
    explore_set = body.exploration is not None  # an explicit 0 is asked for: it turns a variant's exploration off
    own = bool(body.boosts or body.bury or body.pins or explore_set)
    diversity = body.diversity
    if assigned is None and not own:
        return None, diversity  # the common case: nothing to build
    asked = ListRules.of(boosts=body.boosts, bury=body.bury, pins=body.pins, exploration=body.exploration or 0.0) \
        if own else NO_RULES
    if assigned is not None:
        asked = assigned.rules.merged(asked, explore_set=explore_set) if own else assigned.rules
        if diversity is None:
            diversity = assigned.variant.diversity
    return (None if asked == NO_RULES else asked), diversity


@router.get("", response_model=ExperimentList, summary="The configured experiments, their variants and shares")
def list_experiments(request: Request, _key: AdminKey) -> Any:
    return {"experiments": [e.public() for e in experiments_of(request).all]}


@router.get("/{name}", response_model=ExperimentOut, summary="One experiment's definition")
def show_experiment(request: Request, name: Name, _key: AdminKey) -> Any:
    return experiments_of(request).get(name).public()


@router.get("/{name}/report", response_model=ExperimentReport, dependencies=[Depends(known_query)],
            summary="Per variant: users, impressions, clicks, conversions, CTR and conversion rate, and the "
                    "difference to the control",
            description="Rates carry 95% Wilson intervals; the difference to the control carries a 95% interval and "
                        "the p-value of a two-sided z-test whose variance is clustered by user (delta method), with "
                        "the pooled two-proportion z-test beside it. Only lists served from `since` on count "
                        "(default: the definition's `started_at`, the start of its current run).")
async def experiment_report(request: Request, name: Name, rec: RecommenderDep, _key: AdminKey,
                            since: Annotated[str | None, Query(max_length=64, description=SINCE_DOC)] = None) -> Any:
    from recsys.experiments import experiment_report as report
    from recsys.feedback.report import parse_since

    exp = experiments_of(request).get(name)
    when = parse_since(since) if since is not None else None
    return await run_in_threadpool(report, rec.store, exp, since=when)
