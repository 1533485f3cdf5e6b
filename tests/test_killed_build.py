"""A `recsys build` with new encoder heads interrupted after its fit (here: its ranker training fails) changes
nothing that is served or that later jobs build on: the heads' CURRENT, the index and the ranker stay the old set;
a standalone `recsys index build` after it keeps recommendations on and drops the stale PENDING; a plain build
serves a consistent set."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.service import Recommender
from recsys.store import Store
from tests.e2e_fixture import built_demo, e2e_settings, private_home


def _served(settings: object) -> tuple[str | None, str | None, str | None]:
    """(heads CURRENT, index CURRENT, ranker CURRENT) of the data directory."""
    from recsys.encoders import get_preset
    from recsys.encoders.encoder import current_heads_dir
    from recsys.index import current_id, index_root
    from recsys.ranking import rankers_root
    from recsys.ranking.artifact import current_version

    heads = current_heads_dir(settings, get_preset(settings.encoder.preset, settings))  # type: ignore[attr-defined]
    return (heads.name if heads else None, current_id(index_root(settings)),  # type: ignore[arg-type]
            current_version(rankers_root(settings)))  # type: ignore[arg-type]


def _consistent(rec: Recommender, user: str) -> None:
    """The served ranker ranks the served index's vectors, and recommendations come back."""
    rec.refresh()
    assert rec.ranker.manifest["encoder_id"] == rec.index.manifest.encoder_id
    assert rec.recommend(user, k=5)


@pytest.mark.slow
def test_a_build_killed_after_its_fit_changes_nothing_a_later_index_build_serves(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.ranking as ranking
    from recsys.index import build_from_catalog, index_root, layout
    from recsys.index.pairing import pending_id
    from recsys.store.queries import events_frame

    home, _ = built_demo(tmp_path_factory)
    settings = e2e_settings(private_home(home, tmp_path / "home"))
    store = Store.open(settings)
    try:
        with store.session() as s:
            user = str(events_frame(s)["user_id"].iloc[0])
        before = _served(settings)
        old_encoder = Recommender(settings, store).index.manifest.encoder_id

        def killed(*args: object, **kwargs: object) -> object:
            raise KeyboardInterrupt  # as a kill -9 during training: nothing after the fit's save runs

        monkeypatch.setattr(ranking, "train_ranker", killed)
        with pytest.raises(KeyboardInterrupt):
            Recommender(settings, store).jobs.build(force=True)
        monkeypatch.undo()
        root = index_root(settings)
        left = pending_id(root)
        assert _served(settings) == before and left is not None and left != before[1]
        assert layout.read_manifest(layout.generation_path(root, left)).encoder_id != old_encoder  # new heads'
        _consistent(Recommender(settings, store), user)

        # a cron's `recsys index build`: the current heads are the served ranker's, so nothing turns off
        report = build_from_catalog(store, settings)
        assert report["action"] == "skipped" and pending_id(root) is None
        assert _served(settings) == before
        _consistent(Recommender(settings, store), user)

        report = Recommender(settings, store).jobs.build()  # a plain build afterwards: a consistent set
        assert str(report["encoder_fit"]).startswith("skipped")
        _consistent(Recommender(settings, store), user)
    finally:
        store.dispose()
