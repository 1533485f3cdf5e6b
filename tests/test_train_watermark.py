"""A ranker's manifest names exactly the events its training counted (``events_watermark``, read back as
``ItemStats.counted_through``): the watermark is taken from the rows read, not by a second query, which on
PostgreSQL sees its own snapshot and may already count an event written in between."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.orm import Session

import recsys.jobs
import recsys.ranking
from recsys.config import Settings
from recsys.jobs import Jobs
from recsys.store import Store
from recsys.store.events import ingest_events
from recsys.store.importers import run_import
from recsys.store.queries import events_frame, events_watermark, frame_watermark
from tests.store.fixtures import write_hm


def test_the_frames_watermark_is_the_stores(store: Store, settings: Settings, tmp_path: Path) -> None:
    with store.session() as s:
        assert frame_watermark(events_frame(s)) == events_watermark(s) == "0:None"
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    ingest_events(store, [{"user_id": "u", "item_id": "0108775015", "type": "impression"},
                          {"user_id": "u", "item_id": "0108775015", "type": "view"}])
    with store.session() as s:
        events = events_frame(s)
        assert frame_watermark(events) == events_watermark(s) == f"{len(events)}:{events['event_id'].max()}"


class _Stop(Exception):
    pass


def test_training_names_the_events_it_read_not_a_later_write(store: Store, settings: Settings, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run_import(store, "hm", write_hm(tmp_path / "hm"), settings=settings)
    read: list[pd.DataFrame] = []

    def read_then_another_writer(s: Session, **kw: Any) -> pd.DataFrame:
        read.append(events_frame(s, **kw))
        ingest_events(store, [{"user_id": "late", "item_id": "0108775015", "type": "purchase"}])
        return read[-1]

    def train(*args: Any, manifest: dict[str, str], **kwargs: Any) -> None:
        read.append(manifest)  # type: ignore[arg-type]
        raise _Stop

    monkeypatch.setattr(recsys.jobs, "events_frame", read_then_another_writer)
    monkeypatch.setattr(recsys.jobs, "vectors_of_index", lambda *a: None)
    monkeypatch.setattr(recsys.ranking, "train_ranker", train)
    with pytest.raises(_Stop):
        Jobs(SimpleNamespace(settings=settings, store=store))._train(None, None)  # type: ignore[arg-type]
    frame, manifest = read
    assert manifest == {"events_watermark": frame_watermark(frame)}
    with store.session() as s:
        assert events_watermark(s) != manifest["events_watermark"]  # the late event is stored, and not counted


def test_train_refuses_a_rankers_directory_it_cannot_write_before_training(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Said at once, not after the minutes of training, when the trained ranker is saved."""
    from recsys.errors import IndexError_
    from recsys.ranking import rankers_root

    settings = Settings(home=tmp_path / "home")
    rankers_root(settings).parent.mkdir(parents=True)
    rankers_root(settings).write_text("a file where the rankers directory goes")  # root ignores file modes
    monkeypatch.setattr(recsys.ranking, "train_ranker", lambda *a, **k: pytest.fail("trained"))
    rec = SimpleNamespace(settings=settings, store=None, refresh=lambda: None,
                          generations=SimpleNamespace(latest_index=lambda: None))
    with pytest.raises(IndexError_, match="cannot train a ranker: .*rankers cannot be written"):
        Jobs(rec).train()  # type: ignore[arg-type]
