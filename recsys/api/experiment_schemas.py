"""Response shapes of the experiment routes (kept apart from :mod:`recsys.api.schemas`, which holds the rest)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from recsys.api.feedback_schemas import Rate


class VariantOut(BaseModel):
    name: str
    share: float
    changes: dict[str, Any] = Field(description="what the variant sets (diversity, boosts, bury, pins, ...)")


class ExperimentOut(BaseModel):
    name: str
    description: str = ""
    active: bool
    surfaces: list[str]
    control: str
    salted: bool
    started_at: str | None = Field(None, description="when the current run started: its report counts the lists "
                                                     "served from then on")
    variants: list[VariantOut]


class ExperimentList(BaseModel):
    experiments: list[ExperimentOut]


class Comparison(BaseModel):
    """Variant minus control: 95% interval, p-value of a user-clustered z-test (and of the pooled one)."""

    difference: float | None = None
    relative: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    p_value_unclustered: float | None = None
    note: str | None = None
    """Why the interval is missing, when every user of each arm had the same outcome."""


class LeftOut(BaseModel):
    """Clicks and conversions beyond their user's exposures (a client that posts clicks without impressions): counted
    in ``clicks`` and ``conversions``, capped at each user's exposures in the rates and the comparison alike."""

    clicks: int = 0
    conversions: int = 0


class VariantReport(BaseModel):
    name: str
    control: bool
    share: float | None = None
    users: int
    lists: int
    items_served: int
    impressions: int
    clicks: int
    conversions: int  # purchases
    exposures: int
    ctr: Rate
    conversion_rate: Rate
    left_out: LeftOut = Field(default_factory=LeftOut, description="clicks and conversions beyond their user's "
                              "exposures, left out of the rates and the comparison")
    vs_control: dict[str, Comparison] | None = None


class SampleRatio(BaseModel):
    """The users per variant against the shares (chi-square goodness of fit): a mismatch means something besides the
    assignment decides who is recorded in which arm, and the comparisons are biased."""

    users: dict[str, int]
    expected: dict[str, float]
    p_value: float | None = None
    mismatch: bool | None = Field(None, description="p_value below alpha; null while too few users to test")
    alpha: float
    note: str | None = None


class ExperimentReport(BaseModel):
    experiment: str
    active: bool
    control: str
    since: str | None = Field(None, description="lists served from this time (UTC) on: the request's `since`, else "
                                                "the definition's `started_at`; null: all")
    exposure_basis: Literal["impressions", "items_served"]
    confidence: float = 0.95
    test: str
    variants: list[VariantReport]
    sample_ratio: SampleRatio | None = None
