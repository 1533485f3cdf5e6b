"""A nearly full disk: an item upsert stored but not published says so (it was a bare 503 ``encoder`` advising
`recsys embed`, with no per-item results for a bulk write); ``train`` and ``encoder fit`` refuse before their
minutes of work when the disk has no room for what they save (the check only opened a lock file)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recsys.catalogue import Catalogue, NotPublished
from recsys.config import Settings
from recsys.errors import EncoderStorageError, RankerError
from recsys.index import locks
from recsys.store import Store

FULL = EncoderStorageError("writing the item vectors snapshot to /h/vectors failed (No space left on device): free "
                           "space on that disk, then run `recsys embed` again")


def _full(*_: Any) -> Any:
    raise FULL


def test_an_upsert_stored_but_not_published_says_it_was_stored(
        sqlite_store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = Catalogue(settings, sqlite_store)
    monkeypatch.setattr(cat, "index_changes", _full)
    with pytest.raises(NotPublished) as e:
        cat.upsert_items([{"item_id": "a", "title": "red hat"}, {"item_id": "b", "title": "blue hat"}])
    assert (e.value.code, e.value.status) == ("encoder", 503)
    assert "the items were stored" in e.value.message and "`recsys index build`" in e.value.message
    assert [r["status"] for r in e.value.results] == ["stored", "stored"]
    assert all("stored, but publishing" in r["warning"] for r in e.value.results)
    assert cat.unknown_items(["a", "b"]) == []  # stored indeed


def _jobs(settings: Settings) -> Any:
    from recsys.jobs import Jobs

    return Jobs(SimpleNamespace(settings=settings, store=None))  # type: ignore[arg-type]


def test_train_refuses_at_once_without_room_for_a_ranker_like_the_current_one(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.ranking import rankers_root

    root = rankers_root(settings)
    (root / "r1").mkdir(parents=True)
    (root / "r1" / "model.bin").write_bytes(b"x" * 8_000_000)
    (root / "CURRENT").write_text("r1")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=6_000_000))
    with pytest.raises(RankerError, match=r"cannot train a ranker: .* 5\.7 MB free, .* about 9\.5 MB"):
        _jobs(settings)._check_rankers_writable()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=20_000_000))
    _jobs(settings)._check_rankers_writable()


def test_a_first_training_asks_a_small_minimum(tmp_path: Path) -> None:
    assert locks.space_needed(None) == locks.MIN_FREE
    (tmp_path / "heads.pt").write_bytes(b"x" * 100)
    assert locks.space_needed(tmp_path) == locks.MIN_FREE


def test_encoder_fit_refuses_before_reading_features(
        sqlite_store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.encoders import fit, get_preset

    preset = get_preset(settings.encoder.preset, settings)
    monkeypatch.setattr(fit, "get_encoder", lambda *a, **k: SimpleNamespace(preset=preset))  # no towers to load
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    monkeypatch.setattr(fit, "build_pairs", lambda *a, **k: pytest.fail("features read on a full disk"))
    with pytest.raises(EncoderStorageError, match="cannot fit the encoder's heads: .* MB free"):
        fit.fit_encoder(sqlite_store, settings)


@pytest.mark.parametrize("switch, rerun", [(True, "`recsys encoder fit` again"), (False, "`recsys build` again")])
def test_a_failed_heads_write_names_the_step_to_rerun(settings: Settings, switch: bool, rerun: str) -> None:
    from recsys.encoders import fit, get_preset

    def save(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    fitted = SimpleNamespace(heads=SimpleNamespace(save=save), preset=get_preset(settings.encoder.preset, settings))
    with pytest.raises(EncoderStorageError, match=rerun):
        fit._publish(fitted, {"version": "v1"}, settings.home / "encoders" / "x" / "v1", settings,  # type: ignore
                     switch)


@pytest.mark.slow  # the session's e2e demo build
def test_a_build_with_nothing_to_train_is_not_refused_for_a_rankers_room(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The room for a ranker is asked only of a build that trains one: an unchanged store's build (a cron job, the
    demo keeping its ranker) on a nearly full disk goes through, skipping training as before."""
    from recsys.service import Recommender
    from recsys.store import Store
    from tests.e2e_fixture import built_demo, e2e_settings, private_home

    built, _ = built_demo(tmp_path_factory)
    settings = e2e_settings(private_home(built, tmp_path / "home"))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1_000_000))
    store = Store.open(settings)
    try:
        report = Recommender(settings, store).jobs.build()
        assert str(report["train"]).startswith("skipped"), report["train"]
        with pytest.raises((EncoderStorageError, RankerError), match="MB free"):  # a forced build refits and trains
            Recommender(settings, store).jobs.build(force=True)
    finally:
        store.dispose()
