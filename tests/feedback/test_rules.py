"""Business rules after ranking (recsys.serving.rules): bury, pinned slots, the exploration share, their checks."""

from __future__ import annotations

import pytest

from recsys.errors import ValidationFailed
from recsys.serving.results import ScoredItem
from recsys.serving.rules import NO_RULES, ListRules, apply_rules, bury, explore, parse_pairs, pin

CATS = {f"s{i}": "shoes" for i in range(10)} | {f"h{i}": "hats" for i in range(10)}


def ranked(*ids: str) -> list[ScoredItem]:
    return [ScoredItem(i, float(len(ids) - n), ["ranker"]) for n, i in enumerate(ids)]


def ids(items: list[ScoredItem]) -> list[str]:
    return [it.item_id for it in items]


def test_bury_moves_items_and_categories_below_the_rest_in_order() -> None:
    out = bury(ranked("h1", "s1", "h2", "s2", "s3"), ["category:hats", "s2"], CATS.get)
    assert ids(out) == ["s1", "s3", "h1", "h2", "s2"]
    assert ids(bury(ranked("h1", "s1", "h2"), ["category: Hats"], CATS.get)) == ["s1", "h1", "h2"]  # as filters


def test_a_buried_category_falls_out_when_the_ranker_gave_enough_others() -> None:
    rules = ListRules.of(bury=["category:hats"])
    assert rules.fetch(3) == 6
    out = apply_rules(ranked("h1", "s1", "h2", "s2", "s3", "h3"), 3, rules, category_of=CATS.get,
                      known=CATS.__contains__, pool=list, banned=set(), seed=0)
    assert ids(out) == ["s1", "s2", "s3"]


def test_pins_put_items_at_their_positions_tagged_and_keep_k() -> None:
    out = pin(ranked("s1", "s2", "s3", "s4"), 4, [("h9", 1), ("s3", 3)])
    assert ids(out) == ["h9", "s1", "s3", "s2"]
    assert out[0].sources == ["pinned"] and out[2].sources == ["ranker", "pinned"]
    assert ids(pin(ranked("s1"), 8, [("h9", 7)])) == ["s1", "h9"]  # past the end of a short list: last


def test_a_pin_past_k_is_not_in_the_list() -> None:
    """Position 15 is not on a page of 5: placed last, the pin took the fifth place of every such page."""
    out = pin(ranked("s1", "s2", "s3", "s4", "s5", "s6"), 5, [("h9", 15), ("h8", 2)])
    assert ids(out) == ["s1", "h8", "s2", "s3", "s4"]


def test_exploration_never_brings_back_what_was_buried() -> None:
    """The long tail held buried items and categories; explored, they came back above items never buried."""
    pool = ["h1", "h2", "h3", "s8", "s9"]
    rules = ListRules.of(bury=["category:hats", "s9"], exploration=0.5)
    for seed in range(40):
        out = apply_rules(ranked(*(f"s{i}" for i in range(8))), 8, rules, category_of=CATS.get,
                          known=CATS.__contains__, pool=lambda: pool, banned=set(), seed=seed)
        explored = [it.item_id for it in out if it.sources == ["exploration"]]
        assert explored == [] or explored == ["s8"]
        assert not any(i.startswith("h") or i == "s9" for i in ids(out))


def test_one_item_pinned_and_buried_is_refused_and_a_request_overrides_its_variant() -> None:
    with pytest.raises(ValidationFailed, match="both pinned and buried"):
        ListRules.of(pins={"s1": 1}, bury=["s1"])
    variant = ListRules.of(pins={"s1": 1}, bury=["s2"])
    merged = variant.merged(ListRules.of(pins={"s2": 3}, bury=["s1"]))  # the request's word on each item wins
    assert dict(merged.pins) == {"s2": 3} and merged.bury == ("s1",)


def test_pins_of_removed_or_unknown_items_are_left_out() -> None:
    rules = ListRules.of(pins={"h1": 1, "gone": 2, "nope": 3})
    out = apply_rules(ranked("s1", "s2", "s3"), 3, rules, category_of=CATS.get, known=CATS.__contains__,
                      pool=list, banned={"gone"}, seed=0)
    assert ids(out) == ["h1", "s1", "s2"]


def test_exploration_samples_its_share_from_the_pool_after_the_head_tagged() -> None:
    pool = [f"h{i}" for i in range(10)]
    seen = set()
    for seed in range(50):
        import random

        out = explore(ranked(*(f"s{i}" for i in range(10))), 10, 0.2, lambda: pool, {"h0"}, random.Random(seed))
        assert len(out) == 10 and ids(out)[:3] == ["s0", "s1", "s2"]
        tagged = [it for it in out if it.sources == ["exploration"]]
        assert len(tagged) == 2 and all(it.item_id in pool and it.item_id != "h0" for it in tagged)
        seen.update(it.item_id for it in tagged)
        assert [it.item_id for it in out if it.sources == ["ranker"]] == [f"s{i}" for i in range(8)]
    assert seen == set(pool) - {"h0"}  # sampled, not always the same


def test_exploration_is_the_same_for_the_same_seed_and_rounds_a_share_at_random() -> None:
    rules = ListRules.of(exploration=0.15)
    items = ranked(*(f"s{i}" for i in range(10)))
    kw = {"category_of": CATS.get, "known": CATS.__contains__, "pool": lambda: sorted(CATS), "banned": set()}
    assert ids(apply_rules(items, 10, rules, seed=7, **kw)) == ids(apply_rules(items, 10, rules, seed=7, **kw))
    counts = {sum("exploration" in it.sources for it in apply_rules(items, 10, rules, seed=s, **kw))
              for s in range(40)}
    assert counts == {1, 2}  # 1.5 items: one or two


def test_rules_are_checked_merged_and_hashable() -> None:
    with pytest.raises(ValidationFailed, match="position"):
        ListRules.of(pins={"a": 0})
    with pytest.raises(ValidationFailed, match="already pinned"):
        ListRules.of(pins={"a": 2, "b": 2})
    with pytest.raises(ValidationFailed, match="exploration"):
        ListRules.of(exploration=1.5)
    with pytest.raises(ValidationFailed, match="finite"):
        ListRules.of(boosts={"a": float("nan")})
    for empty in ({"boosts": {"": 1.0}}, {"bury": [""]}, {"pins": {" ": 2}}):  # the API refused them; the CLI and
        with pytest.raises(ValidationFailed, match="an empty key"):          # experiment files took them
            ListRules.of(**empty)  # type: ignore[arg-type]
    for huge in (1e308, -101.0):  # two 1e308 boosts summed to inf, and the item left the list as unscorable
        with pytest.raises(ValidationFailed, match="within -100..100"):
            ListRules.of(boosts={"a": huge})
    assert dict(ListRules.of(boosts={"a": 100.0}).boosts) == {"a": 100.0}
    variant = ListRules.of(boosts={"category:hats": 2.0, "s1": 1.0}, exploration=0.1, source="popular")
    merged = variant.merged(ListRules.of(boosts={"s1": -1.0}, bury=["h1"]))
    assert dict(merged.boosts) == {"category:hats": 2.0, "s1": -1.0} and merged.bury == ("h1",)
    assert merged.exploration == 0.1 and merged.source == "popular"
    assert hash(merged) == hash(variant.merged(ListRules.of(boosts={"s1": -1.0}, bury=["h1"])))
    assert ListRules.of() == NO_RULES and not NO_RULES.reorders


def test_a_requests_pins_and_explicit_exploration_win_over_its_variants() -> None:
    variant = ListRules.of(pins={"s1": 1, "s2": 2, "s3": 5}, exploration=0.2)
    merged = variant.merged(ListRules.of(pins={"h1": 1, "s3": 3}), explore_set=True)
    # the request's pin at position 1 replaces the variant's there; its s3 moves s3; s2 keeps its place
    assert dict(merged.pins) == {"h1": 1, "s2": 2, "s3": 3}
    assert merged.exploration == 0.0  # asked for explicitly (exploration=0): off, not the variant's 0.2
    assert variant.merged(ListRules.of(bury=["h1"])).exploration == 0.2  # not asked for: the variant's


@pytest.mark.parametrize("k", [1, 2, 3])
def test_exploration_never_takes_the_first_three_places(k: int) -> None:
    import random

    for seed in range(30):
        out = explore(ranked(*(f"s{i}" for i in range(k))), k, 1.0, lambda: ["h1", "h2"], set(), random.Random(seed))
        assert ids(out) == [f"s{i}" for i in range(k)]
    out = explore(ranked("s0", "s1", "s2", "s3"), 4, 1.0, lambda: ["h1"], set(), random.Random(0))
    assert ids(out) == ["s0", "s1", "s2", "h1"]


def test_key_value_pairs_split_on_the_last_equals_sign() -> None:
    assert parse_pairs(["category:a=b=2", "s1=-0.5"], "boost", float) == {"category:a=b": 2.0, "s1": -0.5}
    with pytest.raises(ValidationFailed, match="'s1' is given twice"):
        parse_pairs(["s1=1", "s1=2"], "boost", float)
    with pytest.raises(ValidationFailed, match="KEY=VALUE"):
        parse_pairs(["s1"], "pin", int)
    with pytest.raises(ValidationFailed, match="not a whole number"):
        parse_pairs(["s1=x"], "pin", int)
