"""Experiments defined in configuration, and the stable assignment of users to their variants.

An experiment names its variants with their traffic shares (summing to 1) and one control. A user's variant is a
pure function of the experiment's salt and the user id: the first 8 bytes of SHA-256 of ``salt:user_id`` as a
number in [0, 1), placed on the variants' cumulative shares. It needs no storage, is the same in every process and
replica, and changes only when the salt or the shares do (a new salt reshuffles everyone: use one for a new run).
The served lists record the experiment's name and variant, not its salt: a new run (a new salt, or new shares) sets
``started_at`` to when it starts, and its report then counts only the lists served from then on.

A variant changes what the pipeline already accepts per request (``diversity``, ``boosts``, ``exclude_seen``), the
rules after ranking (``bury``, ``pins``, ``exploration``: :mod:`recsys.serving.rules`), what the list is ranked
from (``source``: ``ranker``, or ``popular`` alone) and, on the similar-items and search surfaces, the ``modality``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from recsys.config import Settings
from recsys.encoders.base import MODALITIES
from recsys.errors import ConfigError, NotFound, ValidationFailed
from recsys.serving.rules import GENERATION_NAME, SOURCES, ListRules
from recsys.store.limits import MAX_LIST

SURFACES = ("recommendations", "similar", "search")
LIST_ONLY = ("diversity", "boosts", "bury", "pins", "exploration", "exclude_seen", "source", "ranker")
"""What a variant may change that only personal lists honour (similar items and search take ``modality`` alone)."""
"""Where an experiment may act: personal lists, similar items (``modality``), text and image search (``modality``)."""


class Variant(BaseModel):
    """One arm of an experiment: its share of the users and what it changes (None/empty: as configured)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # Numbers and flags are strict: a share of "0.5" or true, or "yes" for a flag, was taken as a guess.
    share: float = Field(gt=0.0, le=1.0, allow_inf_nan=False, strict=True)
    diversity: float | None = Field(default=None, ge=0.0, le=1.0, strict=True)
    boosts: dict[str, StrictFloat] = Field(default_factory=dict, max_length=MAX_LIST)
    bury: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    pins: dict[str, StrictInt] = Field(default_factory=dict, max_length=MAX_LIST)
    exploration: float = Field(default=0.0, ge=0.0, le=1.0, strict=True)
    exclude_seen: StrictBool | None = None
    source: str = "ranker"
    modality: str | None = None
    """The vectors similar items and search use (fused, text, image) when the request names none."""
    ranker: str | None = Field(default=None, pattern=GENERATION_NAME.pattern)
    """A stored ranker generation (``recsys ranker list``'s version, or its ``ranker-`` id) that ranks this variant's
    personal lists over the served index; None: the served ranker."""

    @model_validator(mode="after")
    def _known(self) -> Variant:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {self.source!r}")
        if self.modality is not None and self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, not {self.modality!r}")
        try:
            self.rules()  # checks boosts, pins and exploration
        except ValidationFailed as e:
            raise ValueError(e.message) from None
        return self

    def rules(self) -> ListRules:
        return ListRules.of(boosts=self.boosts, bury=self.bury, pins=self.pins, exploration=self.exploration,
                            exclude_seen=self.exclude_seen, source=self.source, ranker=self.ranker)

    def item_ids(self) -> list[str]:
        """The item ids this variant names (pins, boosts, bury; not ``category:`` keys), once each, in that order."""
        named = [*self.pins, *self.boosts, *self.bury]
        return list(dict.fromkeys(i for i in named if not i.startswith("category:")))

    def category_keys(self) -> list[str]:
        """The ``category:NAME`` keys this variant's boosts and bury name, once each, in that order."""
        return list(dict.fromkeys(k for k in (*self.boosts, *self.bury) if k.startswith("category:")))

    def changes(self) -> dict[str, Any]:
        """What this variant sets, without its name and share."""
        return self.model_dump(exclude={"name", "share"}, exclude_defaults=True)


class Experiment(BaseModel):
    """Variants with traffic shares over one or more surfaces; ``active: false`` keeps it for its report only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    variants: list[Variant] = Field(min_length=1)
    control: str | None = None
    """The variant the others are compared to; default: the first."""
    salt: str | None = Field(default=None, min_length=1)
    """Mixed into the assignment hash; default: the name (an empty salt would hash as the name yet read as salted:
    refused)."""
    started_at: datetime | None = None
    """When the current run started (ISO 8601, naive = UTC; or unix seconds), set with each new salt or change of
    shares: the report counts only the lists served from then on (a run's lists do not record its salt)."""
    surfaces: list[str] = Field(default_factory=lambda: ["recommendations"])
    active: StrictBool = True
    description: str = ""

    @field_validator("started_at", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        from recsys.store.importers.records import datetime_of

        return None if v is None else datetime_of(v)  # naive UTC, as the store keeps times

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        if not math.isclose(sum(v.share for v in self.variants), 1.0, abs_tol=1e-6):
            raise ValueError(f"variant shares sum to {sum(v.share for v in self.variants):g}, not 1")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control {self.control!r} is not one of the variants {names}")
        unknown = set(self.surfaces) - set(SURFACES)
        if unknown or not self.surfaces:
            raise ValueError(f"surfaces must be among {', '.join(SURFACES)}, not {sorted(unknown)}")
        if len(set(self.surfaces)) != len(self.surfaces):
            raise ValueError(f"surfaces repeat: {self.surfaces}")
        for v in self.variants:  # a change no surface of the experiment honours would make an A/B test an A/A one
            changed = set(v.changes())
            if "recommendations" not in self.surfaces and changed & set(LIST_ONLY):
                raise ValueError(f"variant {v.name!r} sets {', '.join(sorted(changed & set(LIST_ONLY)))}, which "
                                 "only personal lists honour; add the surface 'recommendations' or drop them")
            if "modality" in changed and not set(self.surfaces) & {"similar", "search"}:
                raise ValueError(f"variant {v.name!r} sets modality, which only similar items and search honour; "
                                 "add the surface 'similar' or 'search' or drop it")
        return self

    @property
    def control_name(self) -> str:
        return self.control or self.variants[0].name

    def bucket(self, user_id: str) -> float:
        """The user's place in [0, 1): stable, uniform, independent across salts."""
        digest = hashlib.sha256(f"{self.salt or self.name}:{user_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    def assign(self, user_id: str) -> Variant:
        """The user's variant (by :meth:`bucket` on the cumulative shares)."""
        u, edge = self.bucket(user_id), 0.0
        for v in self.variants:
            edge += v.share
            if u < edge:
                return v
        return self.variants[-1]  # shares summing to 1 - 1e-9

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise NotFound(f"experiment {self.name!r} has no variant {name!r}")

    def public(self) -> dict[str, Any]:
        """The definition as plain JSON (the API's and the CLI's ``show``)."""
        return {"name": self.name, "description": self.description, "active": self.active,
                "surfaces": list(self.surfaces), "control": self.control_name, "salted": self.salt is not None,
                "started_at": self.started_at.isoformat() if self.started_at is not None else None,
                "variants": [{"name": v.name, "share": v.share, "changes": v.changes()} for v in self.variants]}


@dataclass(frozen=True)
class Assignment:
    """A user's place in the running experiment of a surface."""

    experiment: str
    variant: Variant
    rules: ListRules = field(default_factory=ListRules)
    """The variant's rules, made once at load (not per request)."""


@dataclass
class Experiments:
    """Every configured experiment; at most one active per surface."""

    all: list[Experiment] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [e.name for e in self.all]
        if len(set(names)) != len(names):
            raise ConfigError(f"experiment names repeat: {names}")
        for s in SURFACES:
            running = [e.name for e in self.all if e.active and s in e.surfaces]
            if len(running) > 1:
                raise ConfigError(f"experiments {running} are all active on {s!r}: at most one may be")
        self._by_surface = {s: e for e in self.all if e.active for s in e.surfaces}
        self._rules = {(e.name, v.name): v.rules() for e in self.all for v in e.variants}

    def with_rankers(self, versions: Mapping[tuple[str, str], str]) -> Experiments:
        """These experiments with the ``ranker`` of each (experiment, variant) in ``versions`` replaced (the stored
        generation's version it resolved to: :func:`recsys.experiments.rankers.check_variant_rankers`)."""
        def variant(e: Experiment, v: Variant) -> Variant:
            version = versions.get((e.name, v.name))
            return v if version is None else v.model_copy(update={"ranker": version})

        return Experiments([e.model_copy(update={"variants": [variant(e, v) for v in e.variants]})
                            for e in self.all])

    def get(self, name: str) -> Experiment:
        for e in self.all:
            if e.name == name:
                return e
        raise NotFound(f"no experiment {name!r}; configured: {', '.join(e.name for e in self.all) or 'none'}")

    def assign(self, surface: str, user_id: str | None) -> Assignment | None:
        """The running experiment of ``surface`` and the user's variant; None without one (or without a user)."""
        exp = self._by_surface.get(surface)
        if exp is None or not user_id:
            return None
        variant = exp.assign(user_id)
        return Assignment(exp.name, variant, self._rules[exp.name, variant.name])


def parse_experiments(raw: Sequence[Mapping[str, Any]]) -> Experiments:
    """Experiments from plain definitions; ConfigError naming the first bad field."""
    out = []
    for i, d in enumerate(raw):
        try:
            out.append(Experiment.model_validate(d))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            name = d.get("name", i) if isinstance(d, Mapping) else i
            raise ConfigError(f"experiment {name!r}: " + (f"{where}: {msg}" if where else msg)) from None
    return Experiments(out)


def load_experiments(settings: Settings) -> Experiments:
    """The experiments of ``experiments.definitions`` and ``experiments.file``."""
    raw: list[Any] = list(settings.experiments.definitions)
    path = settings.experiments.file
    if path is not None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"experiments.file {str(path)!r} cannot be read as JSON: {e}") from None
        raw.extend(_listed(data, str(path)))
    return parse_experiments(raw)


def _listed(data: Any, path: str) -> list[Any]:
    """The experiments of a file's JSON: a list, or an object whose only key is ``experiments`` besides ``_``- and
    ``$``-keys (comments, ``$schema``): a typo'd key would otherwise leave every experiment silently off."""
    shape = 'a JSON list of experiments or {"experiments": [...]}'
    if isinstance(data, dict):
        extra = sorted(k for k in set(data) - {"experiments"} if not str(k).startswith(("_", "$")))  # comments
        if extra:
            raise ConfigError(f"experiments.file {path!r}: unknown key(s) {', '.join(map(repr, extra))}; it holds "
                              f"{shape}")
        data = data.get("experiments", [])
    if not isinstance(data, list):
        raise ConfigError(f"experiments.file {path!r} holds {type(data).__name__} where {shape} belongs")
    return data
