"""A full disk, a read-only data directory or a missing GPU: a clear error that names the file or the setting, and
nothing derived is damaged, set aside or computed again (a healthy cache used to be moved aside as "damaged")."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.config import Settings
from recsys.encoders import cache as cache_mod
from recsys.encoders import embed_catalog, fit_encoder, get_encoder
from recsys.encoders.cache import VectorCache
from recsys.encoders.encoder import current_heads_dir
from recsys.encoders.heads import Heads
from recsys.encoders.registry import get_preset
from recsys.encoders.training import FitParams
from recsys.errors import ConfigError, EncoderStorageError
from recsys.store import Store
from tests.conftest import run_main
from tests.encoders.fixtures import COLOURS, add_item, garment


def _sqlite_error(message: str, code: int | None) -> sqlite3.OperationalError:
    """What sqlite3 raises for ``code`` (an OperationalError, like corruption a DatabaseError underneath)."""
    e = sqlite3.OperationalError(message)
    if code is not None:
        e.sqlite_errorcode = code
    return e


def _healthy(path: Path) -> bytes:
    c = VectorCache(path)
    c.put_many({"a": np.ones(4, np.float32), "b": np.zeros(4, np.float32)})
    c.close()
    return path.read_bytes()


@pytest.mark.parametrize(("message", "code"), [
    ("database or disk is full", sqlite3.SQLITE_FULL),
    ("disk I/O error", sqlite3.SQLITE_IOERR | (13 << 8)),  # SQLITE_IOERR_SHMSIZE: a full disk at open, as seen
    ("attempt to write a readonly database", sqlite3.SQLITE_READONLY),
    ("unable to open database file", sqlite3.SQLITE_CANTOPEN),  # read-only directory, or too many open files
    ("database or disk is full", None),  # no error code (an older sqlite3 module): judged by the message
])
def test_a_cache_that_cannot_be_opened_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     message: str, code: int | None) -> None:
    path = tmp_path / "v.db"
    before = _healthy(path)

    def refuse(*a: Any, **kw: Any) -> sqlite3.Connection:
        raise _sqlite_error(message, code)

    monkeypatch.setattr(cache_mod.sqlite3, "connect", refuse)
    with pytest.raises(EncoderStorageError, match=r"cannot open the cache .*v\.db .*left as it is.*rerun") as got:
        VectorCache(path)
    assert got.value.code == "encoder" and got.value.status == 503
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.db"] and path.read_bytes() == before
    monkeypatch.undo()
    assert sorted(VectorCache(path).get_many(["a", "b"])) == ["a", "b"]  # nothing computed again


def test_a_full_disk_mid_embed_keeps_what_was_cached(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "v.db")
    cache.put_many({"kept": np.ones(4, np.float32)})
    cache._db.execute("PRAGMA max_page_count = 4")  # a real SQLITE_FULL once the file would grow past 4 pages
    with pytest.raises(EncoderStorageError, match=r"cannot write to the cache .*database or disk is full.*so far: "
                                                  "free space on that disk, then rerun"):
        cache.put_many({f"k{i}": np.ones(512, np.float32) for i in range(50)})
    assert len(cache) == 1 and list(cache.get_many(["kept"])) == ["kept"]
    assert not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]


def test_a_read_only_data_directory_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(self: Path, *a: Any, **kw: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(EncoderStorageError, match="Read-only file system.*make RECSYS_HOME writable"):
        VectorCache(tmp_path / "new" / "v.db")


def test_only_a_file_that_is_not_a_database_is_set_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.db"
    _healthy(path)
    real = sqlite3.connect
    calls = []

    def corrupt_once(*a: Any, **kw: Any) -> sqlite3.Connection:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return real(*a, **kw)

    monkeypatch.setattr(cache_mod.sqlite3, "connect", corrupt_once)
    assert len(VectorCache(path)) == 0  # started anew
    assert len([p for p in tmp_path.iterdir() if ".damaged-" in p.name]) == 1


def _catalogue(store: Store, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for i, (name, rgb) in enumerate(COLOURS.items()):
        add_item(store, f"{name}-{i}", f"{name} shirt", category="Shirt",
                 media=[("image", garment(d / f"{name}.jpg", rgb))])


def test_embed_on_a_full_disk_keeps_its_vectors_and_the_old_snapshot(store: Store, tiny: Settings, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _catalogue(store, tmp_path / "img")
    embed_catalog(store, tiny)
    snapshot = next(tiny.home.glob("vectors/*/vectors.npz"))
    before = snapshot.read_bytes()

    def full(*a: Any, **kw: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with store.session() as s:  # one changed item: encoded and cached, then the snapshot cannot be written
        from sqlalchemy import update

        from recsys.store import Item
        s.execute(update(Item).where(Item.external_id == "red-0").values(title="a new title"))
    with pytest.raises(EncoderStorageError, match=r"vectors snapshot to .* failed \(No space left on device; .*MB "
                                                  r"free there\).*unchanged.*free space on that disk.*recsys embed"):
        embed_catalog(store, tiny)
    assert snapshot.read_bytes() == before and [p.name for p in snapshot.parent.iterdir()] == ["vectors.npz"]
    monkeypatch.undo()
    again = embed_catalog(store, tiny)
    assert (again.encoded, again.cached) == (0, len(COLOURS))


def test_fit_on_a_full_disk_removes_its_heads_and_keeps_the_current(store: Store, tiny: Settings, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _catalogue(store, tmp_path / "img")
    params = FitParams(epochs=1, batch_size=8, val_pairs=0)
    first = fit_encoder(store, tiny, params=params)
    preset = get_preset(tiny.encoder.preset, tiny)
    real_save = Heads.save

    def full(self: Heads, directory: Path, manifest: dict[str, Any]) -> None:
        real_save(self, directory, manifest)  # the files written, then torch's writer fails as it does on ENOSPC
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(Heads, "save", full)
    with pytest.raises(EncoderStorageError, match=f"fitted heads .*failed .*torch could not write heads.pt.*removed "
                                                  f"and {first.version} stay current.*free space on that disk"):
        fit_encoder(store, tiny, params=params)
    heads = current_heads_dir(tiny, preset)
    assert heads is not None and heads.name == first.version
    assert [p.name for p in heads.parent.iterdir() if p.is_dir()] == [first.version]


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "gpu"])
def test_a_device_torch_cannot_use_is_refused_naming_the_setting(tiny: Settings, monkeypatch: pytest.MonkeyPatch,
                                                                 device: str) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    tiny.encoder.device = device
    with pytest.raises(ConfigError, match=f"RECSYS_ENCODER__DEVICE='{device}'.*cpu"):
        get_encoder(tiny)


def test_the_cli_says_one_line_and_exits_2(store: Store, tiny: Settings, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _catalogue(store, tmp_path / "img")
    monkeypatch.setenv("RECSYS_HOME", str(tiny.home))
    monkeypatch.setenv("RECSYS_DATABASE_URL", tiny.db_url)
    monkeypatch.setenv("RECSYS_ENCODER__PRESET", tiny.encoder.preset)
    monkeypatch.setenv("RECSYS_ENCODER__DEVICE", "cpu")

    def full(*a: Any, **kw: Any) -> sqlite3.Connection:
        raise _sqlite_error("database or disk is full", sqlite3.SQLITE_FULL)

    monkeypatch.setattr(cache_mod.sqlite3, "connect", full)
    code, err = run_main(monkeypatch, capsys, "embed")
    assert code == 2 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("error")] == [err.strip().splitlines()[-1]]
    assert err.strip().splitlines()[-1].startswith("error [encoder]: cannot open the cache ")
