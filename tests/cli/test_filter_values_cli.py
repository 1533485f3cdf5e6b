"""`--filter` on the CLI: values match ignoring case; a value no served item has is refused naming the closest."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import typer

from recsys.cli.pipeline import _filters
from recsys.index import ItemMeta

REC = SimpleNamespace(index=SimpleNamespace(meta=ItemMeta.build(
    ["a", "b"], category=["Dress", "Trousers"], attributes=[{"colour": "Black"}, {"material": "linen"}])))


def test_case_differences_pass() -> None:
    f = _filters(["category=dress|TROUSERS", "attr.colour=black"], REC)
    assert f.mask(REC.index.meta).tolist() == [True, False]


def test_unknown_values_are_refused_with_the_closest() -> None:
    with pytest.raises(typer.BadParameter) as e:
        _filters(["category=Dres", "attr.colr=blue", "attr.material=linnen"], REC)
    assert str(e.value) == ("no item has the category 'Dres' (closest: Dress); no item has the attribute 'colr' "
                            "(closest: colour); no item has the material 'linnen' (closest: linen); categories: "
                            "Dress, Trousers")
