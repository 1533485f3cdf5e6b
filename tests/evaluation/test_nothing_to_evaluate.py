""""Nothing to evaluate" says that dislikes do not count, and how many users have only dislikes (defect 6 of the
trainer review: every user had dislikes on eight days and was told to have events on two days)."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.errors import ValidationFailed
from recsys.evaluation.runner import evaluate_store


def _events(types: list[str]) -> pd.DataFrame:
    rows = [{"user_id": f"u{u}", "item_id": f"i{(u + d) % 5}", "type": t, "value": None,
             "ts": pd.Timestamp("2024-01-01") + pd.Timedelta(days=d)}
            for u in range(4) for d, t in enumerate(types)]
    return pd.DataFrame(rows)


def test_users_with_only_dislikes_are_counted() -> None:
    with pytest.raises(ValidationFailed) as e:
        evaluate_store(_events(["dislike"] * 8), make_ours=None, item_ids=[f"i{i}" for i in range(5)], vectors=None,
                       part=None)
    msg = e.value.message
    assert "positive events (dislikes do not count)" in msg and "4 of the 4 users with events have only dislikes" in msg


def test_without_dislikes_the_count_is_not_said() -> None:
    with pytest.raises(ValidationFailed) as e:
        evaluate_store(_events(["purchase"]), make_ours=None, item_ids=[f"i{i}" for i in range(5)], vectors=None,
                       part=None)
    assert "dislikes do not count" in e.value.message and "have only dislikes" not in e.value.message
