from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.config import IndexSettings
from recsys.errors import IncompatibleArtifact, NoIndex, NotFound, RecsysError, ValidationFailed
from recsys.index import (
    IndexHandle,
    IndexReader,
    build_generation,
    current_id,
    list_generations,
    prune,
    rollback,
    verify,
)
from recsys.index.layout import MANIFEST, read_manifest, sha256_file
from recsys.store import Store
from tests.index.fixtures import clustered, ids, meta_for

S = IndexSettings(keep_generations=3)


def _build(root: Path, n: int = 200, seed: int = 0, enc: str = "enc-a", **kw: object) -> str:
    v = clustered(n, seed=seed)
    return build_generation(root, ids(n), {"fused": v, "text": v}, encoder_id=enc, watermark=f"w{seed}",
                            meta=meta_for(ids(n)), settings=S, **kw).generation_id  # type: ignore[arg-type]


def test_build_writes_manifest_and_switches(tmp_path: Path) -> None:
    with pytest.raises(NoIndex, match="run `recsys build`"):
        IndexReader.open(tmp_path)
    gid = _build(tmp_path)
    assert current_id(tmp_path) == gid
    gdir = tmp_path / "generations" / gid
    m = json.loads((gdir / MANIFEST).read_text())
    for key in ("encoder_id", "dim", "metric", "factory", "item_count", "checksum", "watermark", "recall_at_10"):
        assert key in m, key
    assert (m["encoder_id"], m["dim"], m["metric"], m["factory"], m["item_count"], m["watermark"]) == \
        ("enc-a", 16, "inner_product", "Flat", 200, "w0")
    assert m["recall_at_10"]["fused"] == 1.0
    for name, digest in m["files"].items():
        assert sha256_file(gdir / name) == digest
    assert not any((tmp_path / "tmp").iterdir())
    r = IndexReader.open(tmp_path, encoder_id="enc-a", dim=16)
    assert r.generation_id == gid and len(r) == 200
    assert verify(tmp_path) == []
    (gdir / "seg0" / "ids.npy").write_bytes(b"garbage")
    assert verify(tmp_path, gid) == ["seg0/ids.npy"]


def test_incompatible_generation_refused(tmp_path: Path) -> None:
    _build(tmp_path)
    with pytest.raises(IncompatibleArtifact, match="encoder 'enc-a'.*'enc-b'"):
        IndexReader.open(tmp_path, encoder_id="enc-b")
    with pytest.raises(IncompatibleArtifact, match="16-d.*512-d"):
        IndexReader.open(tmp_path, dim=512)


def test_list_rollback_prune(tmp_path: Path) -> None:
    made = [_build(tmp_path, seed=s) for s in range(5)]
    listed = [m.generation_id for m in list_generations(tmp_path)]
    assert listed == made[-3:]  # keep_generations=3
    assert current_id(tmp_path) == made[-1]
    assert rollback(tmp_path) == made[-2]
    assert IndexReader.open(tmp_path).generation_id == made[-2]
    assert rollback(tmp_path, to=made[-1]) == made[-1]
    with pytest.raises(NotFound):
        rollback(tmp_path, to="nope")
    rollback(tmp_path, to=made[-3])
    with pytest.raises(NotFound, match="no generation older"):
        rollback(tmp_path)
    # pruning never removes the served generation, even when it is the oldest
    assert prune(tmp_path, keep=1) == [made[-2]]
    assert [m.generation_id for m in list_generations(tmp_path)] == [made[-3], made[-1]]
    assert IndexReader.open(tmp_path).generation_id == made[-3]


def test_masked_modality_and_bad_input(tmp_path: Path) -> None:
    v = clustered(50)
    has = np.arange(50) % 2 == 0
    build_generation(tmp_path, ids(50), {"fused": v, "image": v}, present={"image": has}, encoder_id="e", settings=S)
    r = IndexReader.open(tmp_path)
    hits = r.search_one(v[1], 50, modality="image")
    assert len(hits) == 25 and all(int(i[1:]) % 2 == 0 for i, _ in hits)
    _, found = r.vectors_of(["i00001", "i00002", "zzz"], "image")
    assert found.tolist() == [False, True, False]
    with pytest.raises(ValidationFailed, match="not unique"):
        build_generation(tmp_path, ["a", "a"], {"fused": v[:2]}, encoder_id="e", settings=S)
    with pytest.raises(ValidationFailed, match="fused"):
        build_generation(tmp_path, ["a"], {"text": v[:1]}, encoder_id="e", settings=S)
    with pytest.raises(ValidationFailed, match="rows"):
        build_generation(tmp_path, ["a", "b"], {"fused": v[:3]}, encoder_id="e", settings=S)
    with pytest.raises(ValidationFailed, match="factory"):
        build_generation(tmp_path, ids(50), {"fused": v}, encoder_id="e", factory="Nonsense12", settings=S)
    broken = v.copy()
    broken[[3, 7]] = np.nan  # a damaged snapshot's rows: named, and nothing published
    with pytest.raises(ValidationFailed, match=r"2 item\(s\), e.g. 'i00003', 'i00007'.*recsys embed"):
        build_generation(tmp_path, ids(50), {"fused": broken}, encoder_id="e", settings=S)
    assert IndexReader.open(tmp_path).generation_id == r.generation_id


def test_artifact_recorded(tmp_path: Path, sqlite_store: Store) -> None:
    from sqlalchemy import select

    from recsys.store.tables import Artifact

    gid = _build(tmp_path / "idx", store=sqlite_store)
    with sqlite_store.session() as s:
        row = s.scalars(select(Artifact).where(Artifact.kind == "index")).one()
    assert row.version == gid and row.manifest["encoder_id"] == "enc-a" and Path(row.path).is_dir()


def test_handle_follows_pointer(tmp_path: Path) -> None:
    h = IndexHandle(tmp_path)
    with pytest.raises(NoIndex):
        h.get()
    a = _build(tmp_path, seed=1)
    assert h.get().generation_id == a
    assert not h.refresh()
    b = _build(tmp_path, seed=2)
    assert h.get().generation_id == a  # old one served until refreshed
    assert h.refresh() and h.get().generation_id == b
    _build(tmp_path, seed=3, enc="other")
    assert not IndexHandle(tmp_path, encoder_id="enc-a").refresh()
    h2 = IndexHandle(tmp_path, encoder_id="enc-a")
    with pytest.raises(IncompatibleArtifact):
        h2.get()
    assert read_manifest(tmp_path / "generations" / b).generation_id == b


def test_a_lost_current_pointer_names_the_generations_and_the_rollback(tmp_path: Path) -> None:
    with pytest.raises(NoIndex, match="run `recsys build`"):
        IndexReader.open(tmp_path)
    gid = build_generation(tmp_path, ids(20), {"fused": clustered(20)}, encoder_id="e", settings=S).generation_id
    (tmp_path / "CURRENT").unlink()  # removed by hand, or lost with a disk
    for call in (lambda: IndexReader.open(tmp_path), lambda: rollback(tmp_path),
                 lambda: IndexHandle(tmp_path, encoder_id="e").get()):
        with pytest.raises(NoIndex, match=f"CURRENT file is missing.*rollback --to {gid}"):
            call()
    assert rollback(tmp_path, gid) == gid and IndexReader.open(tmp_path).generation_id == gid


def _damaged_and_counted(root: Path, generation: str, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """One bit of ``generation``'s FAISS file flipped (same size: only hashing sees it); the generations the handle
    opens from now on, in a list."""
    import recsys.index.handle as handle_mod

    victim = next((root / "generations" / generation).rglob("*.faiss"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    opened: list[str | None] = []
    real_open = IndexReader.open

    def counting(*args: Any, **kwargs: Any) -> IndexReader:
        opened.append(kwargs.get("generation"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(handle_mod.IndexReader, "open", counting)
    return opened


def test_a_generation_that_failed_to_load_is_not_hashed_again_every_round(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.index.handle as handle_mod

    a = _build(tmp_path, seed=1)
    h = IndexHandle(tmp_path)
    assert h.get().generation_id == a
    b = _build(tmp_path, seed=2)
    opened = _damaged_and_counted(tmp_path, b, monkeypatch)
    assert not h.refresh() and not h.refresh() and h.get().generation_id == a  # the old one keeps serving
    assert opened == [b]  # refused once, not hashed again on the next round
    monkeypatch.setattr(handle_mod, "RETRY_S", 0.0)
    assert not h.refresh() and opened == [b, b]  # tried again after the back-off
    c = _build(tmp_path, seed=3)
    assert h.refresh() and h.get().generation_id == c  # another generation is loaded at once


def test_a_server_that_starts_on_a_damaged_generation_does_not_hash_it_on_every_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.index.handle as handle_mod

    a = _build(tmp_path, seed=1)
    opened = _damaged_and_counted(tmp_path, a, monkeypatch)
    h = IndexHandle(tmp_path)
    for _ in range(3):  # nothing served yet: every call is strict, and each says why
        with pytest.raises(RecsysError, match="(?i)damaged|checksum"):
            h.get()
    assert opened == [a]  # the same refusal again, not a hash of the files per request
    monkeypatch.setattr(handle_mod, "RETRY_S", 0.0)
    with pytest.raises(RecsysError):
        h.get()
    assert opened == [a, a]


def test_rollback_refuses_another_encoders_generation_and_heals_a_dangling_pointer(tmp_path: Path) -> None:
    old = _build(tmp_path, seed=0, enc="enc-old")
    a = _build(tmp_path, seed=1)
    _build(tmp_path, seed=2)
    with pytest.raises(IncompatibleArtifact, match=r"built with encoder 'enc-old'.*every query would fail"):
        rollback(tmp_path, to=old)  # servers would switch to it and every search would fail
    assert rollback(tmp_path, to=old, force=True) == old
    rollback(tmp_path, to=a, force=True)
    (tmp_path / "CURRENT").write_text("20990101T000000000000Z-abcdef\n")  # a restore that lost that generation
    assert rollback(tmp_path) == list_generations(tmp_path)[-1].generation_id  # the newest one that verifies


def test_a_build_over_an_unreadable_current_generation_is_a_full_one(tmp_path: Path, sqlite_store: Store) -> None:
    from recsys.config import Settings
    from recsys.index import build_from_catalog, index_root
    from tests.index.test_catalog import FakeEncoder, _add_items

    store = sqlite_store
    settings = Settings(home=tmp_path / "home")
    _add_items(store, 30)
    first = build_from_catalog(store, settings, vectors=FakeEncoder())["generation"]
    (index_root(settings) / "generations" / first / MANIFEST).write_text('{"generation_id": ')
    assert build_from_catalog(store, settings, vectors=FakeEncoder())["action"] == "full"  # it told to run itself
    (index_root(settings) / "CURRENT").write_text("20990101T000000000000Z-abcdef\n")
    assert build_from_catalog(store, settings, vectors=FakeEncoder())["action"] == "full"


def test_a_full_disk_mid_build_says_so_and_leaves_no_partial_files(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.index.build as build

    served = _build(tmp_path, seed=0)

    def full(name: str) -> None:
        if name == "meta_written":
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "_checkpoint", full)
    with pytest.raises(RecsysError, match=r"No space left on device; .* MB free there\); its partial files were "
                                          rf"removed and {served} is still served"):
        _build(tmp_path, seed=1)
    assert current_id(tmp_path) == served and not any((tmp_path / "tmp").iterdir())


def test_a_damaged_npy_header_and_a_manifest_of_another_shape_are_named(tmp_path: Path) -> None:
    # a tokenize error from the .npy header and an AttributeError from a "[]" manifest escaped as tracebacks
    gid = _build(tmp_path)
    f = tmp_path / "generations" / gid / "seg0" / "fused.vectors.npy"
    data = bytearray(f.read_bytes())
    data[10:20] = b"(" * 10
    f.write_bytes(bytes(data))
    with pytest.raises(RecsysError, match=f"index generation {gid} could not be read"):
        IndexReader.open(tmp_path, settings=IndexSettings(verify_on_load_mb=0))  # sizes only: the header is read
    (tmp_path / "generations" / gid / MANIFEST).write_text("[]")
    assert list_generations(tmp_path) == []
    with pytest.raises(IncompatibleArtifact, match="unreadable .AttributeError"):
        read_manifest(tmp_path / "generations" / gid)


# A prune cut short (the process killed inside rmtree) left a generation directory that no listing showed and no
# later prune removed: the manifest now goes first, and prunes remove what such a cut left.
def test_a_prune_cut_short_leaves_nothing_that_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from recsys.index import layout

    made = [_build(tmp_path, seed=s) for s in range(2)]
    real_rmtree = shutil.rmtree

    def killed(path: Path, ignore_errors: bool = False) -> None:  # the process dies before any file is removed
        raise KeyboardInterrupt

    monkeypatch.setattr(layout.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        prune(tmp_path, keep=1)
    monkeypatch.setattr(layout.shutil, "rmtree", real_rmtree)
    gens = layout.generations_dir(tmp_path)
    assert (gens / made[0]).is_dir() and [m.generation_id for m in list_generations(tmp_path)] == [made[1]]
    assert layout.incomplete_generations(tmp_path) == [made[0]]
    (gens / "by-hand").mkdir()
    assert prune(tmp_path, keep=3) == [made[0], "by-hand"]
    assert sorted(p.name for p in gens.iterdir()) == [made[1]] and layout.incomplete_generations(tmp_path) == []
    assert IndexReader.open(tmp_path).generation_id == made[1]
