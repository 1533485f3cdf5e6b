from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.errors import ValidationFailed
from recsys.index import ItemFilter, ItemMeta, parse_filters
from tests.index.fixtures import ids, meta_for


def test_filter_fields_and_combination() -> None:
    meta = meta_for(ids(300))
    j = np.arange(300)
    assert (ItemFilter.of(categories=["c1", "c2"]).mask(meta) == np.isin(j % 9, [1, 2]) & (j % 100 != 99)).all()
    assert (ItemFilter.of(price_min=10, price_max=20).mask(meta) == ((j % 100 >= 10) & (j % 100 <= 20))).all()
    assert (ItemFilter.of(in_stock=False).mask(meta) == (j % 3 == 0)).all()
    assert (ItemFilter.of(attributes={"colour": "red"}).mask(meta) == (j % 2 == 1)).all()
    assert (ItemFilter.of(attributes={"size": 3}).mask(meta) == (j % 5 == 3)).all()
    assert (ItemFilter.of(attributes={"size": ["3", "4"]}).mask(meta) == np.isin(j % 5, [3, 4])).all()
    both = ItemFilter.of(categories=["rare"], in_stock=True)
    assert (both.mask(meta) == ((j % 100 == 99) & (j % 3 != 0))).all()
    assert ItemFilter().is_empty and ItemFilter().mask(meta).all()


def test_unknown_price_never_passes_a_bound() -> None:
    meta = ItemMeta.build(["a", "b"], price=[None, 5.0])
    assert ItemFilter.of(price_max=10).mask(meta).tolist() == [False, True]
    assert ItemFilter.of().mask(meta).tolist() == [True, True]


def test_parse_filters() -> None:
    f = parse_filters(["category=A|B", "price>=2.5", "price<=10", "in_stock=true", "attr.colour=red"])
    assert f == ItemFilter.of(categories={"A", "B"}, price_min=2.5, price_max=10, in_stock=True,
                              attributes={"colour": "red"})
    assert parse_filters([]) is None
    with pytest.raises(ValidationFailed, match="bad filter"):
        parse_filters(["colour=red"])
    for bad in ("price>=cheap", "price<=nan", "price>=-inf"):
        with pytest.raises(ValidationFailed, match="bad filter"):
            parse_filters([bad])


def test_meta_roundtrip(tmp_path: Path) -> None:
    meta = meta_for(ids(20))
    meta.save(tmp_path / "m.parquet")
    back = ItemMeta.load(tmp_path / "m.parquet")
    assert back.item_ids.tolist() == meta.item_ids.tolist()
    assert back.category.tolist() == meta.category.tolist()
    assert back.attributes == meta.attributes
    f = ItemFilter.of(categories=["c3"], attributes={"colour": "blue"}, price_max=50)
    assert (f.mask(back) == f.mask(meta)).all()


def test_filter_dict_roundtrip() -> None:
    f = ItemFilter.of(categories=["a"], price_min=1.0, in_stock=True, attributes={"k": "v"})
    assert ItemFilter.from_dict(f.to_dict()) == f
    assert ItemFilter.from_dict({}) is None
    assert ItemFilter.from_dict({"categories": "a"}) == ItemFilter.of(categories=["a"])
    with pytest.raises(ValidationFailed, match="unknown filter"):
        ItemFilter.from_dict({"colour": "red"})


def test_an_inverted_price_range_is_refused_on_every_path() -> None:
    from recsys.errors import ValidationFailed
    from recsys.index.meta import ItemFilter, parse_filters

    with pytest.raises(ValidationFailed, match="minimum is greater than the maximum"):
        parse_filters(["price>=10", "price<=5"])  # the CLI's --filter: it printed "no results"
    with pytest.raises(ValidationFailed, match="minimum is greater"):
        ItemFilter.of(price_min=3.0, price_max=2.0)
    assert ItemFilter.of(price_min=2.0, price_max=2.0).price_max == 2.0
