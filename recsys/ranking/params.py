"""One dataclass with every knob of the ranking pipeline; saved whole in the artifact manifest."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

_AT_LEAST_ONE = ("recent", "hidden", "epochs", "batch_anchors", "max_candidates", "cobuy_dim", "cobuy_epochs",
                 "max_history", "max_events", "anchors_per_user", "max_anchors")
_ABOVE_ZERO = ("lr",)
"""Rates that must be > 0: a learning rate of 0 saves the network's random initial weights as a trained ranker."""
RANGES: dict[str, tuple[float, float]] = {
    "hybrid_lexical_weight": (0.0, 1.0), "new_min_sim": (-1.0, 1.0), "half_life_days": (1e-3, math.inf),
    **{name: (1.0, math.inf) for name in _AT_LEAST_ONE},  # 0 would divide by zero or make an empty array
}
"""Allowed values of the knobs that are not plain sizes, windows or rates (those must be finite and >= 0)."""
CHOICES: dict[str, tuple[str, ...]] = {"content_pathway": ("light", "deep", "none"),
                                       "attention_space": ("fused", "content")}
"""The values a string knob may take."""


@dataclass
class RankingParams:
    # candidates
    recent: int = 30
    """History events the interest clusters and the co-occurrence query look at."""
    interests: int = 3
    interest_k: int = 40
    content_last: int = 5
    content_k: int = 15
    cooc_k: int = 60
    repurchase: bool = True
    repurchase_k: int = 60
    variant_k: int = 80
    trending_k: int = 30
    trending_days: float = 7.0
    popular_k: int = 20
    similar_k: int = 100
    similar_last: int = 10
    similar_unsold_k: int = 0
    """Also the most similar of the items nobody has bought yet (as of the request): a sparse shop's new articles."""
    cobuy: bool = False
    """Fit the co-purchase space (:mod:`recsys.ranking.cobuy`): a candidate source and similarity features. Off: with
    ``missed_positives`` it won on H&M validation but lost on the withheld test shoppers (README, Evaluation)."""
    cobuy_k: int = 100
    cobuy_last: int = 10
    cobuy_dim: int = 128
    cobuy_window_days: float = 14.0
    cobuy_epochs: int = 15
    hybrid_k: int = 0
    """The ``hybrid`` source (the latest items' neighbours by name words and by description vectors, fused by
    reciprocal rank: :mod:`recsys.ranking.lexical`) and the name-word likeness features; 0: off. Opt-in: on H&M it
    reaches twice the description space's new-to-user targets, but the ranker did not turn that into recall on
    validation (README, Evaluation)."""
    hybrid_last: int = 10
    hybrid_lexical_weight: float = 0.5
    """The name words' share of the fusion (text search's ``lexical_weight``)."""
    new_k: int = 5
    new_slots: int = 1
    """Result slots kept for items added after training that resemble the history (they have no statistics yet)."""
    new_min_sim: float = 0.5
    cooc_window: int = 20
    variant_attribute: str | None = "product_code"
    # model
    hidden: int = 64
    content_pathway: str = "light"
    """"light" (attention over cosine similarities), "deep" (learned projection + transformer) or "none"."""
    attention_space: str = "fused"
    """Vectors the light pathway compares: "fused" (the encoder's) or "content" (``ItemTable.content``)."""
    max_history: int = 50
    max_events: int = 1000
    """The latest history events a request reads and ranks from, and a training anchor sees: a request's work stays
    bounded however long the shopper's history (reading 50,000 events took ~0.24 s). The network itself looks at the
    latest ``max_history``; repeats, category shares and the shopper's own counts at all of these."""
    half_life_days: float = 30.0
    # training
    seed: int = 0
    epochs: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_anchors: int = 64
    anchors_per_user: int = 8
    max_anchors: int = 20_000
    random_negatives: int = 20
    missed_positives: bool = False
    """Also train on targets the candidate generator missed (teaches content and co-purchase similarity beyond the
    sources; worse without ``cobuy``)."""
    max_candidates: int = 300

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def checked(cls, overrides: dict[str, Any], base: RankingParams | None = None) -> RankingParams:
        """``base`` (default: the defaults) with ``overrides``; an unknown knob or a value of the wrong type is a
        ValueError naming it (so a typo in ``RECSYS_RANKING__PARAMS`` fails at start-up, not silently)."""
        p = cls.from_dict(asdict(base)) if base is not None else cls()
        known = {f.name: f for f in fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"unknown ranking parameter {key!r}; known: {', '.join(sorted(known))}")
            default = getattr(cls(), key)
            kind = type(default) if default is not None else str
            optional = default is None or "None" in str(known[key].type)
            ok = isinstance(value, kind) or (kind is float and isinstance(value, int)) or \
                (optional and value is None)
            if not ok or (kind in (int, float) and isinstance(value, bool)):
                raise ValueError(f"ranking parameter {key!r} must be {kind.__name__}, got {value!r}")
            if key in CHOICES and value not in CHOICES[key]:
                raise ValueError(f"ranking parameter {key!r} must be one of {', '.join(CHOICES[key])}, got {value!r}")
            lo, hi = RANGES.get(key, (0.0, math.inf))
            if kind in (int, float) and not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"ranking parameter {key!r} must be a finite number in [{lo}, {hi}], "
                                 f"got {value!r}")
            if key in _ABOVE_ZERO and value <= 0:
                raise ValueError(f"ranking parameter {key!r} must be a finite number > 0, got {value!r}")
            setattr(p, key, float(value) if kind is float and value is not None else value)
        return p

    @classmethod
    def from_settings(cls, settings: Any) -> RankingParams:
        """The knobs ``settings.ranking`` sets (seed, repurchase, then every override in ``params``); defaults
        without settings."""
        p = cls()
        r = getattr(settings, "ranking", None)
        if r is not None:
            p.seed, p.repurchase = int(r.seed), bool(r.repurchase)
            p = cls.checked(dict(r.params or {}), p)
        return p

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankingParams:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
