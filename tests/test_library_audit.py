"""A Recommender used as a library (a notebook, a script) answers as the API and the CLI do: it ranks under the
server's compute-thread cap, takes a plain ``str`` as one id or category, and says a deleted item was deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys.errors import UnknownItem
from recsys.index import ItemFilter
from recsys.service import Recommender
from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = pytest.mark.slow  # the session's e2e demo build


@pytest.fixture
def rec(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Recommender:
    built, _ = built_demo(tmp_path_factory)
    return Recommender(e2e_settings(private_home(built, tmp_path / "home")))


def _user_with_history(rec: Recommender) -> str:
    from sqlalchemy import text

    with rec.store.reading() as c:
        return str(c.execute(text("SELECT u.external_id FROM users u JOIN events e ON e.user_id = u.id "
                                  "GROUP BY u.id ORDER BY count(*) DESC LIMIT 1")).scalar_one())


def test_library_ranking_runs_under_the_servers_thread_cap(rec: Recommender,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss  # noqa: F401  (its OpenMP pool is one of those capped)
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    assert rec.settings.api.compute_threads == 1
    ranker, seen = rec.ranker, []
    rank = ranker.recommend

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append((torch.get_num_threads(), max(p["num_threads"] for p in threadpool_info())))
        return rank(*args, **kwargs)

    monkeypatch.setattr(ranker, "recommend", watched)
    user, was = _user_with_history(rec), torch.get_num_threads()
    torch.set_num_threads(2)  # a notebook's defaults on a 2-core machine, whatever this machine has
    try:
        with threadpool_limits(limits=2):
            top = rec.trending(3)
            rec.recommend(user, 5, fresh=True)
            rec.recommend_for_events([{"item_id": top[0].item_id, "type": "view"}], 5)
            rec.buy_again(user, 5)
            outside = (torch.get_num_threads(), max(p["num_threads"] for p in threadpool_info()))
    finally:
        torch.set_num_threads(was)
    assert len(seen) == 4 and set(seen) == {(1, 1)}, seen  # ranked as the server ranks
    assert outside == (2, 2)  # and the caller's threads given back afterwards


def test_a_plain_string_is_one_id_or_category(rec: Recommender) -> None:
    top = [x.item_id for x in rec.trending(5)]
    assert top[0] not in [x.item_id for x in rec.trending(5, exclude=top[0])]
    assert top[1] not in [x.item_id for x in rec.similar(top[0], 5, exclude=top[1])]
    user = _user_with_history(rec)
    first = rec.recommend(user, 5)[0].item_id
    assert first not in [x.item_id for x in rec.recommend(user, 5, exclude=first)]
    category = rec.get_item(top[0])["category"]
    assert ItemFilter.of(categories=category) == ItemFilter.of(categories=[category])
    assert rec.trending(5, filter=ItemFilter.of(categories=category))
    assert rec.more_like_these(top[0], k=5) == rec.more_like_these({top[0]: 1.0}, k=5)


def test_a_deleted_item_is_said_deleted_before_and_after_a_delta(rec: Recommender) -> None:
    gone, other = (x.item_id for x in rec.trending(2))

    def refused() -> list[str]:
        out = []
        for call in (lambda: rec.similar(gone, 3), lambda: rec.more_like_these({gone: 1.0}, k=3)):
            with pytest.raises(UnknownItem) as e:
                call()
            out.append(e.value.message)
        return out

    rec.catalogue.delete_item(gone)
    assert all("was deleted" in m for m in refused())  # more_like_these took it as an example before
    it = rec.get_item(other)  # any later catalogue change publishes a delta, which drops the deleted item
    rec.catalogue.upsert_items([{"item_id": other, "title": it["title"], "category": it["category"],
                                 "price": (it["price"] or 1) + 1}])
    assert all("was deleted" in m and "recsys build" not in m for m in refused())
