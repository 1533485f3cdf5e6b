"""Category and attribute filter values match ignoring case and surrounding spaces, and a value no item has is named
with the closest known ones (H&M's categories are "Dress", its colours "Black": ``category=dress`` gave nothing)."""

from __future__ import annotations

import numpy as np

from recsys.index import ItemFilter, ItemMeta, parse_filters


def _meta() -> ItemMeta:
    return ItemMeta.build(["a", "b", "c", "d"], category=["Dress", "Trousers", None, " Dress "],
                          attributes=[{"colour": "Black", "size": 38}, {"colour": "White"}, {}, {"colour": "black"}])


def test_values_match_ignoring_case_and_spaces() -> None:
    meta = _meta()
    for cats in (["dress"], ["DRESS"], [" Dress"], ["Dress"]):
        assert ItemFilter.of(categories=cats).mask(meta).tolist() == [True, False, False, True], cats
    assert ItemFilter.of(attributes={"colour": "BLACK "}).mask(meta).tolist() == [True, False, False, True]
    assert ItemFilter.of(attributes={"colour": ["white", "nope"]}).mask(meta).tolist() == [False, True, False, False]
    assert ItemFilter.of(attributes={"size": "38"}).mask(meta).tolist() == [True, False, False, False]  # as before
    assert parse_filters(["category=dress|trousers"]).mask(meta).tolist() == [True, True, False, True]  # the CLI's
    assert not ItemFilter.of(categories=["Dres"]).mask(meta).any()


def test_a_subset_of_rows_filters_alike() -> None:
    meta = _meta()
    meta.vocabulary("category")  # coded once: the subset keeps the codes
    rows = np.array([3, 1, 0])
    assert ItemFilter.of(categories=["dress"]).mask(meta.take(rows)).tolist() == [True, False, True]
    assert ItemFilter.of(categories=["dress"]).mask(_meta().take(rows)).tolist() == [True, False, True]


def test_values_no_item_has_are_named_with_the_closest() -> None:
    meta = _meta()
    f = ItemFilter.of(categories=["dress", "Dres", "Zzz"], attributes={"colour": ["blak", "white"], "color": "red"})
    assert f.unknown_values(meta) == [
        {"field": "category", "value": "Dres", "closest": ["Dress"]},
        {"field": "category", "value": "Zzz", "closest": []},
        {"field": "attributes.colour", "value": "blak", "closest": ["Black"]},
        {"field": "attributes.color", "value": "red", "closest": [], "closest_fields": ["attributes.colour"]},
    ]
    assert ItemFilter.of(categories=[" DRESS"], attributes={"colour": "black"}, price_max=5).unknown_values(meta) == []
    assert ItemFilter.of(price_max=5, in_stock=True).unknown_values(meta) == []
