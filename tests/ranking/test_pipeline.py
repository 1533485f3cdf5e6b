"""Known-answer tests of the ranking pipeline on the tiny fashion world (tests/ranking/fixtures.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recsys.ranking as ranking
from recsys.errors import IncompatibleArtifact
from recsys.ranking import ExactSearch, RankingPipeline, SimpleVectors
from tests.ranking.fixtures import DIM, World, make_world, small_params, user_events


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture(scope="module")
def pipe(world: World) -> RankingPipeline:
    return RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())


def _intra_similarity(world: World, ids: list[str]) -> float:
    v = world.vectors.fused[[world.vectors.item_ids.index(i) for i in ids]]
    s = v @ v.T
    n = len(ids)
    return float((s.sum() - n) / (n * (n - 1)))


def test_public_api_is_exported() -> None:
    for name in ranking.__all__:
        assert hasattr(ranking, name)


def test_red_dress_buyer_gets_red_dresses(world: World, pipe: RankingPipeline) -> None:
    recs = pipe.recommend(user_events(["dress-red-0", "dress-red-1"]), k=5)
    assert len(recs) == 5
    kinds = [world.kind[r.item_id] for r in recs]
    assert sum(k == ("dress", "red") for k in kinds) >= 3
    assert all(r.sources for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_unknown_user_gets_trending_tagged(pipe: RankingPipeline) -> None:
    recs = pipe.recommend(None, k=5)
    assert len(recs) == 5
    assert all({"trending", "popular"} & set(r.sources) for r in recs)
    assert pipe.recommend(user_events([]), k=3)


def test_disliked_item_never_returns_and_neighbours_drop(world: World, pipe: RankingPipeline) -> None:
    liked = user_events(["hat-green-0", "hat-green-1", "hat-green-2"])
    before = [r.item_id for r in pipe.recommend(liked, k=10)]
    target = before[0]
    dis = pd.concat([liked, user_events([target], start="2024-03-02", types=["dislike"])], ignore_index=True)
    after = [r.item_id for r in pipe.recommend(dis, k=10)]
    assert target not in after
    again = pd.concat([dis, user_events([target], start="2024-03-03", types=["view"])], ignore_index=True)
    assert target not in [r.item_id for r in pipe.recommend(again, k=30)]


def test_exclusions_and_filters(world: World, pipe: RankingPipeline) -> None:
    h = user_events(["shoe-blue-0", "shoe-blue-1"])
    top = [r.item_id for r in pipe.recommend(h, k=5)]
    recs = pipe.recommend(h, k=5, exclude=set(top[:2]))
    assert not set(top[:2]) & {r.item_id for r in recs}
    recs = pipe.recommend(h, k=10, filter_fn=lambda i: world.kind[i][0] != "shoe")
    assert len(recs) == 10
    assert all(world.kind[r.item_id][0] != "shoe" for r in recs)
    only = [i for i in world.vectors.item_ids if world.kind[i][1] == "green"]
    recs = pipe.recommend(h, k=5, allowed=only)
    assert {r.item_id for r in recs} <= set(only)
    # a filter narrower than the candidate sources still fills k when k items exist
    hats = [i for i in world.vectors.item_ids if world.kind[i][0] == "hat"]
    recs = pipe.recommend(h, k=12, allowed=hats, exclude={hats[0]})
    assert len(recs) == 12 and {r.item_id for r in recs} <= set(hats) - {hats[0]}


def test_mmr_lowers_intra_list_similarity(world: World, pipe: RankingPipeline) -> None:
    h = user_events(["bag-red-0", "bag-red-1", "dress-blue-0"])
    plain = [r.item_id for r in pipe.recommend(h, k=8, diversity=0.0)]
    diverse = [r.item_id for r in pipe.recommend(h, k=8, diversity=0.7)]
    assert _intra_similarity(world, diverse) < _intra_similarity(world, plain)


def test_boosts_lift_an_item(world: World, pipe: RankingPipeline) -> None:
    h = user_events(["dress-red-0", "dress-red-1"])
    recs = pipe.recommend(h, k=20)
    last = recs[-1].item_id
    boosted = pipe.recommend(h, k=20, boosts={last: 10.0})
    assert boosted[0].item_id == last
    bags = [r.item_id for r in pipe.recommend(h, k=20, boosts={"category:BAG ": 10.0})[:3]]  # folded, as filters
    assert all(i.startswith("bag-") for i in bags), bags


def test_new_item_ranks_without_retraining(world: World, pipe: RankingPipeline) -> None:
    p = copy.deepcopy(pipe)
    v = world.vectors
    assert v.text is not None and v.image is not None
    new_vec = v.fused[v.item_ids.index("dress-red-0")] * 0.98 + 0.02 * np.ones(DIM, np.float32)
    new_vec /= np.linalg.norm(new_vec)
    ids = [*v.item_ids, "dress-red-new"]
    nv = SimpleVectors(ids, np.vstack([v.fused, new_vec]), np.vstack([v.text, new_vec]),
                       np.vstack([v.image, new_vec]), v.encoder_id)
    items = pd.concat([world.items, pd.DataFrame([{"item_id": "dress-red-new", "category": "dress", "price": 20.0,
                                                     "in_stock": True, "attributes": {}}])], ignore_index=True)
    p.update_items(nv, items)
    recs = p.recommend(user_events(["dress-red-0", "dress-red-2", "dress-red-3"]), k=10, exclude_seen=True)
    assert "dress-red-new" in [r.item_id for r in recs]
    other = p.recommend(user_events(["hat-blue-0", "hat-blue-1"]), k=5)
    assert "dress-red-new" not in [r.item_id for r in other]


def test_training_is_reproducible(world: World, pipe: RankingPipeline) -> None:
    a = pipe
    b = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params())
    h = user_events(["bag-green-0", "shoe-red-1"])
    ra, rb = a.recommend(h, k=10), b.recommend(h, k=10)
    assert [r.item_id for r in ra] == [r.item_id for r in rb]
    assert np.allclose([r.score for r in ra], [r.score for r in rb])
    assert a.manifest["seed"] == b.manifest["seed"] == 0


def test_save_load_roundtrip_and_refusal(world: World, pipe: RankingPipeline, tmp_path: Path) -> None:
    h = user_events(["hat-red-0", "hat-red-1"])
    before = pipe.recommend(h, k=6)
    root = tmp_path / "rankers"
    gen = ranking.save_generation(pipe, root)
    assert ranking.current_generation(root) == gen
    m = ranking.read_manifest(gen)
    assert m["encoder_id"] == "test-encoder" and m["dim"] == DIM and m["features"] == list(ranking.FEATURES)
    loaded = RankingPipeline.load(gen, vectors=world.vectors, items=world.items, expect_encoder_id="test-encoder")
    after = loaded.recommend(h, k=6)
    assert [r.item_id for r in after] == [r.item_id for r in before]
    assert np.allclose([r.score for r in after], [r.score for r in before], atol=1e-5)
    with pytest.raises(IncompatibleArtifact):
        RankingPipeline.load(gen, expect_encoder_id="other-encoder")
    assert set(m["files"]) >= {"net.pt", "stats.npz", "stats_ids.txt"}
    weights = bytearray((gen / "net.pt").read_bytes())  # one flipped bit, same size: loads unless checksummed
    weights[-200] ^= 0x01
    (gen / "net.pt").write_bytes(bytes(weights))
    assert "net.pt is missing or damaged" in str(ranking.artifact.damage(gen))
    with pytest.raises(IncompatibleArtifact, match="ranker .*net.pt is missing or damaged.*recsys train"):
        RankingPipeline.load(gen, vectors=world.vectors, items=world.items, expect_encoder_id="test-encoder")
    wrong = SimpleVectors(world.vectors.item_ids, np.ones((len(world.vectors.item_ids), DIM + 1), np.float32),
                          encoder_id="test-encoder")
    with pytest.raises(IncompatibleArtifact):
        loaded.update_items(wrong)


def test_explanations(world: World, pipe: RankingPipeline) -> None:
    recs = pipe.recommend(user_events(["dress-green-0", "shoe-green-1"]), k=4, explain=True)
    for r in recs:
        e = r.explanation
        assert e is not None
        assert e["score"] == pytest.approx(r.score, abs=1e-5)
        assert e["sources"] == r.sources
        assert e["because_of"] in {"dress-green-0", "shoe-green-1"}
        assert e["text_share"] + e["image_share"] == pytest.approx(1.0, abs=1e-3)
        assert e["ranker"].startswith("ranker-")
    cold = pipe.recommend(None, k=2, explain=True)[0].explanation
    assert cold is not None and cold["because_of"] is None


def test_exact_search_excludes_and_orders() -> None:
    v = np.eye(4, dtype=np.float32)
    s = ExactSearch(["a", "b", "c", "d"], v)
    q = np.array([[1.0, 0.5, 0.2, 0.0]], np.float32)
    assert [i for i, _ in s.search(q, 3, set())[0]] == ["a", "b", "c"]
    assert [i for i, _ in s.search(q, 2, {"a"})[0]] == ["b", "c"]


def test_non_finite_scores_are_never_served(world: World, pipe: RankingPipeline, tmp_path: Path) -> None:
    """NaN weights are refused when loaded; NaN item vectors leave their candidates out, and a list with nothing
    finite left is an error that says what to check (JSON has no NaN: it was served as null)."""
    import copy

    import torch

    from recsys.errors import RankerError

    gen = ranking.save_generation(pipe, tmp_path / "rankers")
    state = torch.load(gen / "net.pt", weights_only=True)
    next(t for t in state.values() if t.is_floating_point()).fill_(float("nan"))
    torch.save(state, gen / "net.pt")
    with pytest.raises(IncompatibleArtifact, match="net.pt is missing or damaged .checksum.*ranker rollback"):
        RankingPipeline.load(gen, vectors=world.vectors, items=world.items, expect_encoder_id="test-encoder")
    m = ranking.read_manifest(gen)
    del m["files"]  # as a ranker saved before checksums: the weights themselves are still checked
    (gen / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(IncompatibleArtifact, match="non-finite weights.*recsys train"):
        RankingPipeline.load(gen, vectors=world.vectors, items=world.items, expect_encoder_id="test-encoder")

    h = user_events(["hat-red-0", "hat-red-1"])
    damaged = copy.copy(pipe)
    damaged.scores = lambda ex, cands, runtime="auto": [  # type: ignore[method-assign]
        np.where(np.arange(len(c)) % 2 == 0, np.nan, 1.0 - np.arange(len(c)) / len(c)) for c in cands]
    recs = damaged.recommend(h, k=6)
    assert recs and all(np.isfinite(r.score) for r in recs)
    damaged.scores = lambda ex, cands, runtime="auto": [np.full(len(c), np.nan) for c in cands]  # type: ignore
    with pytest.raises(RankerError, match="NaN or infinite.*recsys index verify"):
        damaged.recommend(h, k=6)
