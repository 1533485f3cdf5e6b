"""Response shapes of the feedback report (``GET /v1/feedback/report``): counts and rates with intervals per
ranker version, index generation and serving endpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Rate(BaseModel):
    rate: float | None = None
    low: float | None = Field(default=None, description="95% Wilson interval, lower bound")
    high: float | None = Field(default=None, description="95% Wilson interval, upper bound")


class FeedbackCounts(BaseModel):
    lists: int
    items_served: int
    impressions: int
    clicks: int
    likes: int
    add_to_cart: int
    purchases: int
    unattributed: int = Field(default=0, description="events naming these lists that they cannot have led to (another "
                              "user's, an item not shown, a repeat of the same type and item, one dated before the "
                              "list was served): stored, not counted")
    exposures: int = Field(description="the rates' denominator: impressions, or items served where none were posted")
    exposure_basis: Literal["impressions", "items_served", "mixed"] = Field(
        description="what exposures count; totals over groups of both kinds are 'mixed'")
    ctr: Rate
    conversion_rate: Rate


class FeedbackGroup(FeedbackCounts):
    source: str | None = Field(default=None, description="the endpoint that served the lists")
    ranker_version: str | None = None
    index_generation: str | None = None


class FeedbackReport(BaseModel):
    since: str | None = None
    confidence: float = 0.95
    groups: list[FeedbackGroup]
    totals: FeedbackCounts
