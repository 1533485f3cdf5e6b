"""``RECSYS_RANKING__PARAMS`` is checked when read: an unknown knob, a wrong type or a value out of range fails
with the knob's name instead of training or ranking with it."""

from __future__ import annotations

import pytest

from recsys.ranking.params import RankingParams


@pytest.mark.parametrize(("overrides", "message"), [
    ({"similar_kk": 10}, "unknown ranking parameter 'similar_kk'"),
    ({"similar_k": "10"}, "'similar_k' must be int"),
    ({"epochs": True}, "'epochs' must be int"),
    ({"similar_k": -5}, "'similar_k' must be a finite number in [0.0, inf]"),
    ({"hybrid_lexical_weight": 1.5}, "'hybrid_lexical_weight' must be a finite number in [0.0, 1.0]"),
    ({"hybrid_lexical_weight": True}, "'hybrid_lexical_weight' must be float"),
    ({"new_min_sim": -2.0}, "'new_min_sim' must be a finite number in [-1.0, 1.0]"),
    ({"lr": float("inf")}, "'lr' must be a finite number"),
    ({"lr": float("nan")}, "'lr' must be a finite number"),
    # sizes that would divide by zero or leave an empty array in training or ranking
    ({"batch_anchors": 0}, "'batch_anchors' must be a finite number in [1.0, inf]"),
    ({"max_candidates": 0}, "'max_candidates' must be a finite number in [1.0, inf]"),
    ({"recent": 0}, "'recent' must be a finite number in [1.0, inf]"),
    ({"max_history": 0}, "'max_history' must be a finite number in [1.0, inf]"),
    ({"half_life_days": 0.0}, "'half_life_days' must be a finite number in [0.001, inf]"),
    # no anchor, and a rate that never moves the random initial weights: a ranker that learned nothing
    ({"max_anchors": 0}, "'max_anchors' must be a finite number in [1.0, inf]"),
    ({"lr": 0.0}, "'lr' must be a finite number > 0, got 0.0"),
    ({"lr": 0}, "'lr' must be a finite number > 0, got 0"),
    ({"lr": -0.1}, "'lr' must be a finite number in [0.0, inf]"),
    ({"attention_space": "text"}, "'attention_space' must be one of fused, content, got 'text'"),
    ({"content_pathway": "huge"}, "'content_pathway' must be one of light, deep, none"),
])
def test_bad_knobs_are_refused_by_name(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as err:
        RankingParams.checked(overrides)
    assert message in str(err.value)


def test_good_knobs_are_taken() -> None:
    p = RankingParams.checked({"hybrid_lexical_weight": 1, "new_min_sim": -0.2, "hybrid_k": 100})
    assert (p.hybrid_lexical_weight, p.new_min_sim, p.hybrid_k) == (1.0, -0.2, 100)
    assert RankingParams.checked({"variant_attribute": None}).variant_attribute is None  # typed ``str | None``
