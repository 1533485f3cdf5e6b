"""Business rules on the real service (the session's built e2e demo): bury, pins, exploration and the popular-only
source act on what the ranker gave, and are part of the cache key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.service import Recommender
from recsys.serving.rules import ListRules, long_tail
from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = pytest.mark.slow  # the session's e2e demo build (shared with the notebook and browser tests)


@pytest.fixture
def rec(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Recommender]:
    built, _ = built_demo(tmp_path_factory)
    r = Recommender(e2e_settings(private_home(built, tmp_path / "home")))
    yield r
    r.store.dispose()


def _user(rec: Recommender) -> str:
    from sqlalchemy import select

    from recsys.store.tables import User

    with rec.store.session() as s:
        return str(s.scalars(select(User.external_id).order_by(User.id)).first())


def test_bury_pins_and_exploration_on_the_ranked_list(rec: Recommender) -> None:
    user = _user(rec)
    plain = rec.recommend(user, 10)
    category = rec.get_item(plain[0].item_id)["category"]
    buried = rec.recommend(user, 10, rules=ListRules.of(bury=[f"category:{category}"]))
    cats = [rec.get_item(it.item_id)["category"] for it in buried]
    if category in cats:  # only when too few others were ranked: then all at the bottom
        assert all(c == category for c in cats[cats.index(category):])
    assert [it.item_id for it in buried] != [it.item_id for it in plain]

    outsider = next(i for i in rec.ranker.table.ids if i not in {it.item_id for it in plain})
    pinned = rec.recommend(user, 10, rules=ListRules.of(pins={outsider: 2}))
    assert pinned[1].item_id == outsider and "pinned" in pinned[1].sources and len(pinned) == 10
    assert [it.item_id for it in pinned if it.item_id != outsider] == [it.item_id for it in plain][:9]

    explored = rec.recommend(user, 10, rules=ListRules.of(exploration=0.3))
    tagged = [it for it in explored if it.sources == ["exploration"]]
    pool = set(long_tail(rec.ranker, rec.clock()))
    assert len(tagged) == 3 and all(it.item_id in pool for it in tagged)
    assert all(explored.index(it) >= 3 for it in tagged) and len({it.item_id for it in explored}) == 10
    assert [it.item_id for it in explored] == [it.item_id for it in
                                              rec.recommend(user, 10, rules=ListRules.of(exploration=0.3),
                                                            fresh=True)]  # seeded: cached and fresh agree


def test_the_popular_source_is_what_an_unknown_user_gets(rec: Recommender) -> None:
    user = _user(rec)
    popular = rec.recommend(user, 8, rules=ListRules.of(source="popular"))
    assert [it.item_id for it in popular] == [it.item_id for it in rec.recommend("nobody-at-all", 8)]
    assert [it.item_id for it in popular] != [it.item_id for it in rec.recommend(user, 8)]


def test_exploration_and_pins_keep_to_the_requests_filter(rec: Recommender) -> None:
    from recsys.index.meta import ItemFilter
    from recsys.store.queries import events_frame

    user = _user(rec)
    plain = rec.recommend(user, 10)
    category = rec.get_item(plain[0].item_id)["category"]
    only = ItemFilter.of(categories=[category])
    outsider = next(i for i in rec.ranker.table.ids if rec.get_item(i)["category"] != category)
    with rec.store.session() as s:
        seen = set(events_frame(s, users=[user]).item_id) | {it.item_id for it in plain}  # never pinned: banned
    inside = next(i for i in rec.ranker.table.ids if rec.get_item(i)["category"] == category and i not in seen)
    got = rec.recommend(user, 10, filter=only,
                        rules=ListRules.of(exploration=0.5, pins={outsider: 1, inside: 2}))
    assert {rec.get_item(it.item_id)["category"] for it in got} == {category}
    assert any(it.sources == ["exploration"] for it in got) and got[1].item_id == inside
