"""The statistics know the newest event id they count (``ItemStats.counted_through``): a user they list whose every
stored event is newer (deleted since, and come back) is a new user to them, in the counts and in the co-occurrence
pairs; the bound survives a catalogue change, a recount that keeps the training's pairs, and a save and load (the
manifest's events watermark)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys.ranking.history import History
from recsys.ranking.stats import ItemStats

IDS = [f"i{n}" for n in range(6)]


def _stats(through: int | None = 10) -> ItemStats:
    h = History(np.array([0, 1, 2], np.int64), np.zeros(3, np.int64), np.full(3, np.nan), np.array([1.0, 2.0, 3.0]))
    stats = ItemStats.fit(IDS, {"kept": h})
    stats.counted_through = through
    return stats


def test_a_listed_user_whose_events_are_all_newer_is_uncounted() -> None:
    stats = _stats()
    end = stats.uncounted_from("kept")
    assert end > stats.end_ts
    assert stats.uncounted("kept", 3) == (end, end)  # their trained events are still stored
    assert stats.uncounted("kept", 11) == (-np.inf, -np.inf)  # deleted, and back with new events only
    assert stats.uncounted("kept") == (end, end)  # no ids given: as before
    assert _stats(None).uncounted("kept", 11) == (end, end)  # an artifact that records no watermark
    assert stats.uncounted("stranger", 3) == (-np.inf, -np.inf)


def test_the_bound_survives_a_catalogue_change_and_a_recount_keeping_the_pairs() -> None:
    stats = _stats()
    assert stats.aligned([*IDS, "new"]).counted_through == 10
    recount = _stats(20).with_pairs_of(stats)
    assert (recount.counted_through, recount.pairs_counted_through) == (20, 10)
    assert recount.aligned(IDS[::-1]).pairs_counted_through == 10
    end = recount.uncounted_from("kept")
    assert recount.uncounted("kept", 15) == (end, -np.inf)  # counted by the recount, not by the training's pairs
    assert recount.with_pairs_of(recount).pairs_counted_through == 10  # the training's, kept on the next recount


@pytest.mark.parametrize(("manifest", "want"), [({"events_watermark": "14347:14350"}, 14350),
                                                ({"events_watermark": "0:None"}, None), ({}, None), (None, None)])
def test_a_saved_rankers_bound_is_its_training_watermark(tmp_path: Path, manifest: dict[str, str] | None,
                                                         want: int | None) -> None:
    _stats(None).save(tmp_path)
    if manifest is not None:
        (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert ItemStats.load(tmp_path).counted_through == want
