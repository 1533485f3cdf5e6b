"""A `recsys build` with new encoder heads beside a running server: the server keeps serving the old index with its
ranker until the new pair is complete, then serves both, its text queries encoded by the new heads."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.service import Recommender
from recsys.store import Store
from tests.e2e_fixture import built_demo, e2e_settings, private_home


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path):  # type: ignore[no-untyped-def]
    """(server, builder): two read paths over one copied demo home, as two processes would have."""
    home, _ = built_demo(tmp_path_factory)
    settings = e2e_settings(private_home(home, tmp_path / "home"))
    store = Store.open(settings)
    yield Recommender(settings, store), Recommender(settings, store)
    store.dispose()


def _user(rec: Recommender) -> str:
    from recsys.store.queries import events_frame

    with rec.store.session() as s:
        return str(events_frame(s)["user_id"].iloc[0])


@pytest.mark.slow
def test_a_server_keeps_its_pair_while_a_build_with_new_heads_trains_then_serves_the_new_one(
        pair: tuple[Recommender, Recommender], monkeypatch: pytest.MonkeyPatch) -> None:
    from filelock import FileLock, Timeout

    import recsys.ranking as ranking

    server, builder = pair
    user = _user(server)
    old_index = server.index.generation_id
    old_encoder = server.encoder.id
    assert server.recommend(user, k=5) and server.search_text("red", 3)
    seen: dict[str, object] = {}
    real = ranking.train_ranker

    def watching(*args: object, **kwargs: object) -> object:
        # mid-build: the new index is written, not served; the server still answers everything with the old pair
        server.refresh()
        seen["index"], seen["ranker"] = server.index.generation_id, server.status()["ranker_version"]
        seen["recommend"], seen["search"] = server.recommend(user, k=5), server.search_text("red", 3)
        try:  # the build holds the jobs lock through training: a `recsys train` beside it waits
            FileLock(server.settings.home / "jobs.lock").acquire(timeout=0)
            seen["locked"] = False
        except Timeout:
            seen["locked"] = True
        return real(*args, **kwargs)

    monkeypatch.setattr(ranking, "train_ranker", watching)
    report = builder.jobs.build(force=True)
    assert seen["index"] == old_index and seen["ranker"] is not None and seen["locked"] is True
    assert seen["recommend"] and seen["search"]
    new_index = report["index"]["generation"]
    assert new_index != old_index
    server.refresh()
    assert server.index.generation_id == new_index
    assert server.status()["ranker_version"] == report["train"]["ranker"]
    # the server's queries follow the served index's heads: no 409 after another process fitted new ones
    assert server.search_text("red", 3) and server.encoder.id == server.index.manifest.encoder_id != old_encoder
    assert server.recommend(user, k=5)


@pytest.mark.slow
def test_a_build_interrupted_while_training_leaves_the_old_pair_served(
        pair: tuple[Recommender, Recommender], monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.ranking as ranking
    from recsys.index import index_root, layout

    server, builder = pair
    user = _user(server)
    old_index = server.index.generation_id

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(ranking, "train_ranker", interrupted)
    with pytest.raises(KeyboardInterrupt):
        builder.jobs.build(force=True)
    root = index_root(server.settings)
    pending = (root / layout.PENDING).read_text().strip()
    assert layout.current_id(root) == old_index != pending
    layout.prune(root, 1)  # what a delta published by a server meanwhile would do
    assert (layout.generations_dir(root) / pending).is_dir()
    server.refresh()
    assert server.index.generation_id == old_index and server.status()["not_served"] == []
    assert server.recommend(user, k=5)


@pytest.mark.slow
def test_an_index_of_other_heads_without_its_ranker_waits_behind_the_served_pair(
        pair: tuple[Recommender, Recommender]) -> None:
    """`recsys index build` alone after `recsys encoder fit` (or a build killed between its switches): the index
    that no ranker can rank is not served in place of a working pair, and readiness says why."""
    from recsys.encoders import embed_catalog, fit_encoder
    from recsys.index import build_from_catalog, index_root, layout

    server, builder = pair
    user = _user(server)
    old_index = server.index.generation_id
    fit_encoder(builder.store, builder.settings)
    embed_catalog(builder.store, builder.settings)
    new = build_from_catalog(builder.store, builder.settings, mode="full")["generation"]
    assert layout.current_id(index_root(server.settings)) == new
    server.refresh()
    status = server.status()
    assert server.index.generation_id == old_index and status["not_served"] == []
    assert new in status["reason"] and "waits for a ranker" in status["reason"]
    assert server.recommend(user, k=5) and server.search_text("red", 3)
    server.refresh()  # asked again: still the old pair, the ranker not reloaded in vain
    assert server.index.generation_id == old_index


def test_a_read_only_home_refuses_the_jobs_lock_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from filelock import FileLock

    from recsys.config import Settings
    from recsys.errors import ConfigError
    from recsys.jobs import jobs_lock

    def read_only(self: FileLock, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(FileLock, "acquire", read_only)
    lock = jobs_lock(Settings(home=tmp_path / "home"))
    with pytest.raises(ConfigError, match=r"cannot take the jobs lock .*jobs.lock \(Read-only file system\): make "
                                          r"RECSYS_HOME writable"), lock:
        pass
