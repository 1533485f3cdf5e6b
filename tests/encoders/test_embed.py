"""The embedding job: cache behaviour, broken media, video frames, fusion weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from recsys.config import Settings
from recsys.encoders import embed_catalog, fuse, load_item_vectors
from recsys.store import Item, ItemMedia, Store
from recsys.store.items import item_details
from tests.encoders.fixtures import COLOURS, add_item, animated_gif, broken_media, garment


def _catalogue(store: Store, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    add_item(store, "a", "red shirt", category="Shirt", attributes={"colour": "Red"},
             media=[("image", garment(d / "a.jpg", COLOURS["red"]))])
    add_item(store, "b", "blue dress", category="Dress", description="Long.",
             media=[("image", garment(d / "b.png", COLOURS["blue"], "dress", "PNG"))])
    add_item(store, "c", "text only item", category="Socks")


def test_second_run_encodes_nothing_and_one_change_reencodes_one(store: Store, tiny: Settings, tmp_path: Path) -> None:
    _catalogue(store, tmp_path / "img")
    first = embed_catalog(store, tiny)
    assert (first.items, first.encoded, first.with_image, first.broken_media) == (3, 3, 2, 0)
    second = embed_catalog(store, tiny)
    assert (second.encoded, second.cached) == (0, 3)
    with store.session() as s:
        s.execute(update(Item).where(Item.external_id == "c").values(title="a new title"))
    third = embed_catalog(store, tiny)
    assert third.encoded == 1
    # A replaced image file (new content, new mtime) re-encodes its item.
    img = tmp_path / "img" / "a.jpg"
    garment(img, COLOURS["green"])
    os.utime(img, ns=(1, 10**18))
    assert embed_catalog(store, tiny).encoded == 1
    vecs = load_item_vectors(tiny, store)
    assert vecs.item_ids == ["a", "b", "c"] and vecs.has_image.tolist() == [True, True, False]
    assert vecs.encoder_id == third.encoder_id
    with store.session() as s:  # the snapshot says which content its vectors stand for
        hashes = dict(s.execute(select(Item.external_id, Item.content_hash)).all())
    assert vecs.content_hash == [hashes[i] for i in vecs.item_ids] and all(vecs.content_hash)


def test_broken_media_recorded_item_still_embedded(store: Store, tiny: Settings, tmp_path: Path) -> None:
    files = broken_media(tmp_path / "bad")
    for i, (kind, path) in enumerate(files.items()):
        add_item(store, f"bad{i}", f"item with {kind} image", media=[("image", path)])
    add_item(store, "good", "fine", media=[("image", garment(tmp_path / "ok.jpg", COLOURS["black"]))])
    report = embed_catalog(store, tiny)
    assert report.items == len(files) + 1 and report.broken_media == len(files)
    assert report.with_image == 1
    vecs = load_item_vectors(tiny, store)
    np.testing.assert_allclose(np.linalg.norm(vecs.fused, axis=1), 1.0, atol=1e-4)
    with store.session() as s:
        details = item_details(s, "bad0")
        statuses = dict(s.execute(select(ItemMedia.uri, ItemMedia.status)).all())
    assert details["media"][0]["status"] == "error" and "truncated" in details["media"][0]["error"]
    assert statuses[str(tmp_path / "ok.jpg")] == "ok"


def test_video_frames_averaged(store: Store, tiny: Settings, tmp_path: Path) -> None:
    gif = animated_gif(tmp_path / "clip.gif", [(250, 0, 0), (0, 0, 250), (0, 250, 0), (250, 250, 0)])
    add_item(store, "v", "a clip", media=[("video", gif)])
    report = embed_catalog(store, tiny)
    assert report.with_image == 1 and report.broken_media == 0


def test_changing_video_frames_encodes_videos_again(store: Store, tiny: Settings, tmp_path: Path) -> None:
    """The frame count is part of a video's cache keys: another setting must not serve the old frames' mean."""
    gif = animated_gif(tmp_path / "clip.gif", [(250, 0, 0), (0, 0, 250), (0, 250, 0), (250, 250, 0)])
    add_item(store, "v", "a clip", media=[("video", gif)])
    _catalogue(store, tmp_path / "img")
    tiny.encoder.video_frames = 4
    embed_catalog(store, tiny)
    vecs = load_item_vectors(tiny, store)
    row = vecs.item_ids.index("v")
    four = vecs.image[row]
    tiny.encoder.video_frames = 1
    again = embed_catalog(store, tiny)
    assert (again.encoded, again.cached) == (1, 3)  # the video's item only; stills keep their vectors
    one = load_item_vectors(tiny, store).image[row]
    assert not np.allclose(four, one, atol=1e-3)
    tiny.encoder.video_frames = 4  # back to four frames: the first vectors, from the cache
    assert embed_catalog(store, tiny).encoded == 0
    np.testing.assert_allclose(load_item_vectors(tiny, store).image[row], four, atol=1e-6)


def test_worker_processes_decode(store: Store, tiny: Settings, tmp_path: Path) -> None:
    tiny.encoder.num_workers = 1
    _catalogue(store, tmp_path / "img")
    broken = broken_media(tmp_path / "bad")
    add_item(store, "x", "broken", media=[("image", broken["not_image"])])
    report = embed_catalog(store, tiny)
    assert report.encoded == 4 and report.broken_media == 1


def test_modality_weights_change_fused_vectors(store: Store, tiny: Settings, tmp_path: Path) -> None:
    _catalogue(store, tmp_path / "img")
    embed_catalog(store, tiny)
    even = load_item_vectors(tiny, store)
    tiny.encoder.modality_weights = {"text": 1.0, "image": 3.0}
    image_heavy = load_item_vectors(tiny, store)
    tiny.encoder.modality_weights = {"text": 1.0, "image": 0.0}
    text_only = load_item_vectors(tiny, store)
    assert not np.allclose(even.fused[:2], image_heavy.fused[:2], atol=1e-3)
    np.testing.assert_allclose(text_only.fused, text_only.text, atol=1e-5)
    # The item without an image is its text vector whatever the weights.
    np.testing.assert_allclose(image_heavy.fused[2], image_heavy.text[2], atol=1e-5)
    manual = fuse(even.text, even.image, even.has_image, {"text": 1.0, "image": 3.0})
    np.testing.assert_allclose(manual, image_heavy.fused, atol=1e-5)


def test_field_weights_change_text_vectors(store: Store, tiny: Settings, tmp_path: Path) -> None:
    _catalogue(store, tmp_path / "img")
    embed_catalog(store, tiny)
    before = load_item_vectors(tiny, store).text
    tiny.encoder.text_fields = {"title": 1.0, "category": 3.0}
    embed_catalog(store, tiny)
    after = load_item_vectors(tiny, store).text
    assert not np.allclose(before, after, atol=1e-3)


def test_missing_vectors_error(store: Store, tiny: Settings, tmp_path: Path) -> None:
    from recsys.errors import EncoderError

    with pytest.raises(EncoderError, match="recsys embed"):
        load_item_vectors(tiny, store)


def test_damaged_artifacts_say_what_to_run(store: Store, tiny: Settings, tmp_path: Path) -> None:
    """A truncated or reshaped vectors snapshot, NaN or unreadable encoder heads, a damaged ranker manifest: each
    names itself and the command that writes it again (tracebacks, or NaN embedded into the cache, before)."""
    import json

    import torch

    from recsys.encoders.heads import Heads
    from recsys.encoders.vectors import snapshot_dir
    from recsys.errors import EncoderError, IncompatibleArtifact
    from recsys.ranking.artifact import read_manifest

    add_item(store, "a", "red dress")
    report = embed_catalog(store, tiny)
    snap = snapshot_dir(tiny, report.encoder_id) / "vectors.npz"
    good = snap.read_bytes()
    snap.write_bytes(good[: len(good) // 2])
    with pytest.raises(EncoderError, match="snapshot .* is damaged .*recsys embed"):
        load_item_vectors(tiny)
    with open(snap, "wb") as f:
        np.savez(f, ids=np.array(["a"], dtype=object), packed=np.zeros((1, 7), np.float32))
    with pytest.raises(EncoderError, match=r"vectors of shape \(1, 7\)"):
        load_item_vectors(tiny)

    heads = Heads(image_dim=8, text_dim=8, dim=4, hidden=16)
    d = tmp_path / "heads"
    heads.save(d, {"towers": "t"})
    state = torch.load(d / "heads.pt", weights_only=True)
    next(t for t in state.values() if t.is_floating_point()).fill_(float("nan"))
    torch.save(state, d / "heads.pt")
    with pytest.raises(IncompatibleArtifact, match="non-finite weights.*encoder fit"):
        Heads.load(d, image_dim=8, text_dim=8, towers_id="t")
    (d / "heads.pt").write_bytes(b"")  # torch's EOFError reached the CLI as a bare "Aborted."
    with pytest.raises(IncompatibleArtifact, match=r"heads file .*heads.pt is damaged or empty \(EOFError"):
        Heads.load(d, image_dim=8, text_dim=8, towers_id="t")
    (d / "manifest.json").write_text('{"version": ')
    with pytest.raises(IncompatibleArtifact, match="manifest .* is damaged"):
        Heads.load(d, image_dim=8, text_dim=8, towers_id="t")

    r = tmp_path / "ranker"
    r.mkdir()
    (r / "manifest.json").write_text(json.dumps([1])[:2])
    with pytest.raises(IncompatibleArtifact, match="manifest.json is damaged.*recsys train"):
        read_manifest(r)
