"""``evaluate --test-events`` asks ours through the served path: the history that path ranks from must be the one
the split gives the baselines (DESIGN.md section 4), also when ratings share the target's second (MovieLens)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_fixture import built_demo, e2e_settings, private_home

pytestmark = pytest.mark.slow

DAY = 1_769_904_000  # 2026-02-01 00:00 UTC, after the demo's events begin


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    src, _ = built_demo(tmp_path_factory)
    yield private_home(src, tmp_path_factory.mktemp("served-history") / "home")


def test_served_path_ranks_from_the_splits_history_in_the_targets_second(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys import service
    from recsys.service import Recommender

    # w1 rates four movies, the last three in one second: the target is the last row, the two before it history
    f = tmp_path / "u.data"
    f.write_text(f"w1\titem-00003\t4\t{DAY}\nw1\titem-00010\t5\t{DAY + 86_400}\n"
                 f"w1\titem-00020\t4\t{DAY + 86_400}\nw1\titem-00030\t5\t{DAY + 86_400}\n"
                 f"w2\titem-00005\t4\t{DAY}\nw2\titem-00006\t4\t{DAY + 3600}\n")
    rec = Recommender(e2e_settings(home))
    seen: dict[str, Any] = {}
    served_model, recommend, history_as_of = rec.jobs._served_model, rec.recommend, service.history_as_of

    def model(split: Any) -> Any:
        seen["split"] = split
        return served_model(split)

    def ask(user_id: str, *a: Any, **kw: Any) -> Any:
        seen["user"] = user_id
        return recommend(user_id, *a, **kw)

    ranked_from: dict[str, list[str]] = {}

    def spy(records: Any, table: Any, *a: Any) -> Any:
        hist, when = history_as_of(records, table, *a)
        ranked_from[seen["user"]] = [table.ids[r] for r in hist.rows]
        return hist, when

    monkeypatch.setattr(rec.jobs, "_served_model", model)
    monkeypatch.setattr(rec, "recommend", ask)
    monkeypatch.setattr(service, "history_as_of", spy)
    res = rec.jobs.evaluate(10, test_events=f, fmt="movielens")
    split = seen["split"]
    assert res["users"] == 2 and split.targets["w1"] == ["item-00030"]
    for user in ("w1", "w2"):
        assert ranked_from[user] == split.histories[user]["item_id"].tolist(), user
    assert ranked_from["w1"] == ["item-00003", "item-00010", "item-00020"]  # the target's second, less the target


def test_withheld_shoppers_are_not_evaluated_on_a_served_co_purchase_space(home: Path, tmp_path: Path) -> None:
    """The served space is fitted on every stored purchase, later ones than the withheld targets included: refused
    before the replay stores anything (the stored split fits its own on the events before its first target)."""
    from recsys.errors import ValidationFailed
    from recsys.service import Recommender

    f = tmp_path / "u.data"
    f.write_text(f"w9\titem-00003\t4\t{DAY}\nw9\titem-00010\t5\t{DAY + 86_400}\n")
    rec = Recommender(e2e_settings(home))
    rec.ranker.cobuy = object()  # type: ignore[assignment]  # what a build with RECSYS_RANKING__PARAMS='{"cobuy": true}' holds
    with pytest.raises(ValidationFailed, match="co-purchase space.*would see their future"):
        rec.jobs.evaluate(10, test_events=f, fmt="movielens")
    assert rec.jobs.evaluate  # the store was not touched: no withheld shopper replayed
    from recsys.store.queries import evaluation_users

    with rec.store.session() as s:
        assert "w9" not in evaluation_users(s)
