"""`recsys build` is idempotent: on an unchanged store every stage skips itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.service import Recommender
from recsys.store import Store
from tests.e2e_fixture import built_demo, e2e_settings, private_home


@pytest.mark.slow
def test_second_build_skips_every_stage(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    home, _ = built_demo(tmp_path_factory)
    settings = e2e_settings(private_home(home, tmp_path / "home"))
    store = Store.open(settings)
    report = Recommender(settings, store).jobs.build()
    store.dispose()
    assert str(report["encoder_fit"]).startswith("skipped")
    assert report["embed"]["encoded"] == 0
    assert report["index"]["action"] == "skipped"
    assert str(report["train"]).startswith("skipped")


@pytest.mark.slow
def test_build_retrains_when_the_ranker_knobs_or_its_format_changed(tmp_path_factory: pytest.TempPathFactory,
                                                                   tmp_path: Path) -> None:
    import json

    from recsys.ranking import rankers_root
    from recsys.ranking.artifact import MANIFEST, current_generation

    home, _ = built_demo(tmp_path_factory)
    settings = e2e_settings(private_home(home, tmp_path / "home"))
    changed = settings.model_copy(update={"ranking": settings.ranking.model_copy(update={"params": {"epochs": 1}})})
    store = Store.open(changed)
    try:
        report = Recommender(changed, store).jobs.build()
        assert isinstance(report["train"], dict), report["train"]  # new knobs: trained anew
        assert str(Recommender(changed, store).jobs.build()["train"]).startswith("skipped")
        manifest = current_generation(rankers_root(changed)) / MANIFEST  # type: ignore[operator]
        m = json.loads(manifest.read_text())  # a ranker saved before a knob existed was trained with its default
        manifest.write_text(json.dumps({**m, "params": {k: v for k, v in m["params"].items() if k != "max_events"}}))
        assert str(Recommender(changed, store).jobs.build()["train"]).startswith("skipped")
        # a ranker saved by another version of recsys (another feature list) is replaced, not left unservable
        manifest.write_text(json.dumps({**m, "features": m["features"][:-1]}))
        assert isinstance(Recommender(changed, store).jobs.build()["train"], dict)
    finally:
        store.dispose()


@pytest.mark.slow
def test_the_demo_keeps_its_ranker_after_a_like(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """A second `recsys demo` after a like in the explorer serves at once: the ranker is kept, where a plain build
    retrains because the events changed."""
    from recsys.ranking import rankers_root, read_manifest
    from recsys.ranking.artifact import current_generation
    from recsys.store.queries import events_watermark

    home, _ = built_demo(tmp_path_factory)
    settings = e2e_settings(private_home(home, tmp_path / "home"))
    store = Store.open(settings)
    try:
        rec = Recommender(settings, store)
        item = rec.index.item_ids[0]
        assert rec.catalogue.ingest_events([{"user_id": "user-0001", "item_id": item, "type": "like"}])[0].status \
            == "stored"
        rpath = current_generation(rankers_root(settings))
        assert rpath is not None
        with store.session() as s:
            assert read_manifest(rpath)["events_watermark"] != events_watermark(s)  # a plain build retrains
        report = Recommender(settings, store).jobs.build(keep_ranker=True)
        assert str(report["train"]).startswith("skipped (the current ranker is kept"), report["train"]
        assert current_generation(rankers_root(settings)) == rpath
    finally:
        store.dispose()
