"""Ranker artifacts: a directory with manifest.json, the network weights and the interaction statistics.

Generations live under one root (``<home>/rankers/<version>/``) with a ``CURRENT`` file naming the served one,
replaced atomically. Loading refuses an artifact made for another encoder, dimension or feature list.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from recsys.errors import IncompatibleArtifact, RankerError
from recsys.files import write_text_atomic
from recsys.index.layout import POINTER, build_lock, current_id, sha256_file
from recsys.ranking.cobuy import CobuyProjection
from recsys.ranking.features import FEATURES
from recsys.ranking.model import NetConfig, RankerNet
from recsys.ranking.params import RankingParams
from recsys.ranking.stats import ItemStats

if TYPE_CHECKING:
    from recsys.ranking.pipeline import RankingPipeline

MANIFEST = "manifest.json"
COBUY = "cobuy.npy"
DATA_FILES = ("net.pt", "stats.npz", "stats_ids.txt", "stats_users.txt", COBUY)
"""What :func:`save_pipeline` writes beside the manifest, each with its SHA-256 in the manifest."""
FORMAT = 2
"""2: statistics kept with event times (counted as of each request's time)."""
SAVE_LOCK = "save.lock"
"""Held by :func:`save_generation` while it clears a killed save's leftovers, writes its own and switches
``CURRENT``, and by :func:`recsys.ranking.generations.rollback` from its check to its switch: the only two writers of
``CURRENT``, so neither lands between the other's read and write."""


def save_pipeline(pipe: RankingPipeline, path: Path) -> Path:
    """Write the pipeline into ``path`` (created; existing files replaced)."""
    path.mkdir(parents=True, exist_ok=True)
    pipe.stats.save(path)
    if pipe.net is not None:
        with open(path / "net.pt", "wb") as f:  # a file, not a path: torch then reports a full disk as OSError
            torch.save(pipe.net.state_dict(), f)
    if pipe.cobuy is not None:
        np.save(path / COBUY, pipe.cobuy.weight)
    files = {name: sha256_file(path / name) for name in DATA_FILES if (path / name).is_file()}
    manifest = dict(pipe.manifest, format=FORMAT, has_net=pipe.net is not None, stats_items=len(pipe.stats.ids),
                    ranker_id=pipe.ranker_id, has_cobuy=pipe.cobuy is not None, files=files)
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path / MANIFEST)
    return path


def read_manifest(path: Path) -> dict:
    f = path / MANIFEST
    if not f.exists():
        raise RankerError(f"{path}: no ranker artifact here (missing {MANIFEST}); run `recsys train`")
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IncompatibleArtifact(f"ranker {path.name}: its {MANIFEST} is damaged ({e}); retrain with `recsys "
                                   "train` or roll back with `recsys ranker rollback`") from e
    if not isinstance(m, dict):
        raise IncompatibleArtifact(f"ranker {path.name}: its {MANIFEST} is not a JSON object; retrain with "
                                   "`recsys train`")
    return m


def check_files(m: dict, path: Path) -> None:
    """Refuse a ranker whose files differ from the checksums saved with it (a flipped bit in the weights loads and
    ranks wrongly; rankers saved before checksums are not checked)."""
    bad = [name for name, digest in dict(m.get("files") or {}).items()
           if not (path / name).is_file() or sha256_file(path / name) != digest]
    if bad:
        raise IncompatibleArtifact(f"ranker {path.name}: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} missing "
                                   "or damaged (checksum); roll back with `recsys ranker rollback` or retrain with "
                                   "`recsys train`")


def check_compatible(m: dict, name: str, expect_encoder_id: str | None = None, expect_dim: int | None = None) -> None:
    """Refuse (IncompatibleArtifact) a ranker manifest made for another encoder, dimension, format or feature list."""
    if expect_encoder_id is not None and m.get("encoder_id") != expect_encoder_id:
        raise IncompatibleArtifact(
            f"ranker {name} was trained on encoder {m.get('encoder_id')!r}, the item vectors come from "
            f"{expect_encoder_id!r}; retrain it with `recsys train`")
    if expect_dim is not None and m.get("dim") != expect_dim:
        raise IncompatibleArtifact(f"ranker {name} expects {m.get('dim')}-d vectors, got {expect_dim}-d; "
                                   "retrain it with `recsys train`")
    if m.get("format") != FORMAT:
        raise IncompatibleArtifact(f"ranker {name} was saved in format {m.get('format')}, this version of recsys "
                                   f"reads format {FORMAT}; retrain it with `recsys train`")
    if list(m.get("features", [])) != list(FEATURES):
        raise IncompatibleArtifact(f"ranker {name} was trained with another feature list; retrain it "
                                   "with `recsys train`")


def load_pipeline(cls: type[RankingPipeline], path: Path, expect_encoder_id: str | None = None,
                  expect_dim: int | None = None) -> RankingPipeline:
    m = read_manifest(path)
    check_compatible(m, path.name, expect_encoder_id, expect_dim)
    check_files(m, path)
    params = RankingParams.from_dict(m.get("params", {}))
    stats = ItemStats.load(path)
    net = None
    if m.get("has_net"):
        net = RankerNet(NetConfig(dim=int(m["dim"]), n_features=len(FEATURES), hidden=params.hidden,
                                  content=params.content_pathway))
        try:
            net.load_state_dict(torch.load(path / "net.pt", map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as e:  # saved by an older layout of the model
            raise IncompatibleArtifact(f"ranker {path.name} does not match this version of recsys "
                                       f"({str(e).splitlines()[0]}); retrain it with `recsys train`") from e
        if not _finite(net.state_dict()):  # every score it gave would be NaN, served as null
            raise IncompatibleArtifact(f"ranker {path.name} has non-finite weights (a damaged file?); retrain it "
                                       "with `recsys train`, or roll back with `recsys ranker rollback`")
        net.eval()
    pipe = cls(params, stats, net, str(m["encoder_id"]), int(m["dim"]), m)
    if m.get("has_cobuy"):
        pipe.cobuy = CobuyProjection(np.load(path / COBUY).astype(np.float32))
    return pipe


def damage(path: Path) -> str | None:
    """What keeps the ranker at ``path`` from loading, or None: its manifest, its weights (present, readable,
    finite) and its statistics' archive, checked without building the pipeline (a build decides by it whether the
    current ranker can be kept)."""
    try:
        m = read_manifest(path)
        check_compatible(m, path.name)
        check_files(m, path)
        if m.get("has_net") and not _finite(torch.load(path / "net.pt", map_location="cpu", weights_only=True)):
            return "non-finite weights"
        with zipfile.ZipFile(path / "stats.npz"):  # reads the central directory: a truncated archive fails here
            pass
    except (RankerError, IncompatibleArtifact) as e:
        return e.message
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def _finite(state: dict[str, torch.Tensor]) -> bool:
    """Every weight finite; a feature's scale may be +inf (constant in training: its input is 0)."""
    return all(bool(torch.isfinite(t).all()) if name != "feat_std" else bool((~torch.isnan(t) & (t > 0)).all())
               for name, t in state.items() if t.is_floating_point())


def save_generation(pipe: RankingPipeline, root: Path) -> Path:
    """Save as a new generation under ``root`` and make it current; returns its directory.

    Written into a ``.tmp-*`` directory, renamed in, then ``CURRENT`` switched: a failed write (a full disk, a
    read-only directory) removes what it wrote and raises RankerError, and the served generation stays. Leftovers of
    a killed save are removed first, under a lock, so a concurrent save's directory is never taken for one.
    """
    try:
        with build_lock(root, SAVE_LOCK):
            for p in root.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)
            return _save_new(pipe, root)
    except OSError as e:
        try:
            free = f"; {shutil.disk_usage(root).free / 2**20:,.0f} MB free there"
        except OSError:  # no such directory (a failed mkdir)
            free = ""
        fix = "Make RECSYS_HOME writable" if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "Free space"
        raise RankerError(f"writing a ranker generation under {root} failed ({e.strerror or e}{free}); its partial "
                          f"files were removed and {current_version(root) or 'nothing'} is still served. {fix} and "
                          "run `recsys train` again") from e


def _save_new(pipe: RankingPipeline, root: Path) -> Path:
    version = str(pipe.manifest.get("version"))
    target = root / version
    n = 1
    while target.exists():
        n += 1
        target = root / f"{version}-{n}"
    pipe.manifest["version"] = target.name
    pipe.manifest["created_at"] = datetime.now(UTC).isoformat()
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_pipeline(pipe, tmp)
        os.replace(tmp, target)
        write_pointer(root, target.name)
    except BaseException:  # a full disk, or Ctrl-C: nothing half-written stays to hold the space
        shutil.rmtree(tmp, ignore_errors=True)
        if current_version(root) != target.name:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def write_pointer(root: Path, version: str) -> None:
    """Replace ``CURRENT`` atomically (a unique temporary name, so two writers never share one): a reader, such as
    a server's refresh, sees the old name or the new one, never a mix."""
    write_text_atomic(root / POINTER, version)


def current_version(root: Path) -> str | None:
    """The name ``CURRENT`` holds, or None when nothing was trained yet (the index's pointer, read the same way)."""
    return current_id(root)


def current_generation(root: Path) -> Path | None:
    """The current generation's directory under ``root``, or None when nothing was trained yet."""
    name = current_version(root)
    if name is None:
        return None
    p = root / name
    return p if p.exists() else None
