"""A dislike takes the item out of what the shopper's list is built from, a repeat never bought is not called a
repurchase, and a variant's score does not depend on its catalogue row (the H&M journey audit's defects 1-3)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from recsys.ranking import RankingPipeline, SimpleVectors
from recsys.ranking.catalog import ItemTable
from recsys.ranking.history import history_from_frame
from tests.ranking.fixtures import World, make_world, small_params, user_events


def _product(item_id: str) -> str:
    """H&M-like products: "dress-red-0", "dress-blue-0" and "dress-green-0" are three colours of "dress-0"."""
    kind, _, n = item_id.split("-")
    return f"{kind}-{n}"


@pytest.fixture(scope="module")
def world() -> World:
    w = make_world()
    w.items["attributes"] = [{**a, "product_code": _product(i)} for a, i in zip(w.items["attributes"],
                                                                                  w.items["item_id"], strict=True)]
    return w


@pytest.fixture(scope="module")
def pipe(world: World) -> RankingPipeline:
    return RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())


def _bought_then_disliked() -> pd.DataFrame:
    return pd.concat([user_events(["dress-red-0", "hat-blue-1"]),
                      user_events(["dress-red-0"], start="2024-03-02", types=["dislike"])], ignore_index=True)


def test_a_disliked_item_seeds_nothing_and_explains_nothing(pipe: RankingPipeline) -> None:
    recs = pipe.recommend(_bought_then_disliked(), k=60, explain=True)
    assert recs and "dress-red-0" not in [r.item_id for r in recs]
    for r in recs:
        assert r.explanation is not None and r.explanation["because_of"] != "dress-red-0", r
        if _product(r.item_id) == "dress-0":  # its other colours are no variant pick: nothing seeds them
            assert "variant" not in r.sources and "repurchase" not in r.sources, r
    variants = [r.item_id for r in recs if "variant" in r.sources]
    assert variants and {_product(i) for i in variants} == {"hat-1"}


def test_other_colours_of_a_disliked_product_sink_to_the_bottom(pipe: RankingPipeline) -> None:
    recs = pipe.recommend(_bought_then_disliked(), k=200, policy=None)
    ids = [r.item_id for r in recs]
    colours = [i for i in ("dress-blue-0", "dress-green-0") if i in ids]
    assert colours  # ranked, yet below every item of another product
    assert min(ids.index(i) for i in colours) >= len(ids) - len(colours)


def test_history_seeds_drop_positives_of_disliked_rows_as_of_the_cut(world: World) -> None:
    table = ItemTable.build(world.vectors, world.items)
    h = history_from_frame(_bought_then_disliked(), table)
    red, blue = table.index["dress-red-0"], table.index["hat-blue-1"]
    assert list(h.rows[h.seeds]) == [blue] and list(h.rows) == [red, blue]  # the features still see both
    early = h.prefix(1)  # a training anchor before the dislike: the purchase still seeds
    assert list(early.rows[early.seeds]) == [red]


def test_a_repeat_never_bought_is_labelled_seen(pipe: RankingPipeline) -> None:
    assert pipe.repurchase
    h = user_events(["shoe-red-0", "shoe-red-1", "bag-blue-2"], types=["view", "view", "purchase"])
    recs = pipe.recommend(h, k=30)
    own = {r.item_id: r.sources for r in recs if r.item_id in set(h["item_id"])}
    assert own, "the history's items come back in this world (it repurchases)"
    for item, sources in own.items():
        bought = item == "bag-blue-2"
        assert ("repurchase" in sources) == bought and ("seen" in sources) != bought, (item, sources)


def test_a_variants_score_does_not_depend_on_its_catalogue_row(world: World, pipe: RankingPipeline) -> None:
    h = user_events(["dress-red-0", "hat-blue-1"])
    before = {r.item_id: r.score for r in pipe.recommend(h, k=60)}
    assert "dress-blue-0" in before
    moved = copy.copy(pipe)  # a copy to swap the catalogue of
    v = world.vectors
    order = [i for i in range(len(v.item_ids)) if v.item_ids[i] != "dress-blue-0"]
    order.append(v.item_ids.index("dress-blue-0"))  # an updated item is republished on the last row
    ids = [v.item_ids[i] for i in order]
    moved.update_items(SimpleVectors(ids, v.fused[order], v.text[order], v.image[order], v.encoder_id),
                       world.items.set_index("item_id").loc[ids].reset_index())
    after = {r.item_id: r.score for r in moved.recommend(h, k=60)}
    assert after["dress-blue-0"] == pytest.approx(before["dress-blue-0"], abs=1e-6)
    assert np.isclose(sorted(after.values()), sorted(before.values()), atol=1e-6).all()
