"""A small world and a one-epoch ranker fitted on it, for tests of generations and their messages (module fixtures:
import them as ``from tests.ranking.small import pipe as pipe, world as world``)."""

from __future__ import annotations

import pytest

from recsys.ranking import RankingPipeline
from tests.ranking.fixtures import World, make_world, small_params


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(per_combo=2, users_per_combo=2, events_per_user=4)


@pytest.fixture(scope="module")
def pipe(world: World) -> RankingPipeline:
    return RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params(epochs=1))
