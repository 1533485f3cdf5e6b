"""FakeRecommender (and its FakeCatalogue) take the same arguments as Recommender (and Catalogue): code tested
against the fake calls the real object the same way. Names, kinds and defaults are compared; annotations are not
(the fake takes ``Any`` where the service takes its own types)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from recsys.api.deps import CatalogueLike, RecommenderLike
from recsys.api.testing import FakeCatalogue, FakeRecommender
from recsys.catalogue import Catalogue
from recsys.service import Recommender


def _shape(f: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]


def _public_methods(cls: type) -> list[str]:
    return [n for n, f in vars(cls).items() if not n.startswith("_") and inspect.isfunction(f)]


@pytest.mark.parametrize(("fake", "real"), [(FakeRecommender, Recommender), (FakeCatalogue, Catalogue),
                                            (RecommenderLike, Recommender), (CatalogueLike, Catalogue)])
def test_every_method_of_the_fake_has_the_real_signature(fake: type, real: type) -> None:
    methods = _public_methods(fake)
    assert "recommend" in methods or "upsert_items" in methods
    assert [n for n in methods if not hasattr(real, n)] == []  # the fake invents nothing
    drifted = {n: (str(inspect.signature(getattr(real, n))), str(inspect.signature(getattr(fake, n))))
               for n in methods if _shape(getattr(real, n)) != _shape(getattr(fake, n))}
    assert drifted == {}


def test_the_fakes_trending_leaves_out_what_it_is_told(fake: FakeRecommender) -> None:
    everything = [r.item_id for r in fake.trending(100)]
    assert [r.item_id for r in fake.trending(100, exclude=everything[:2])] == everything[2:]
