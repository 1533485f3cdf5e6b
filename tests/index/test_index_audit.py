"""Index generations and shards, as the audit found them broken: a re-merge under a live reader, a rollback judged
against the served encoder instead of the configured one, a verify that passed an edited manifest or recommended a
rollback with nothing to roll back to, and a bad factory string refused only after every vector was read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recsys.cli.index import app
from recsys.config import IndexSettings, Settings, get_settings
from recsys.errors import IncompatibleArtifact, ValidationFailed
from recsys.index import IndexReader, build_from_catalog, build_generation, current_id, index_root
from recsys.index.layout import MANIFEST, generations_dir
from recsys.index.shards import merge_on_disk, train_empty, write_shard
from tests.index.fixtures import clustered, ids

# -- merge_on_disk beside a reader ------------------------------------------------------------------------------

READER = """
import json, sys
from pathlib import Path
import numpy as np
from recsys.index.shards import open_merged
ix = open_merged(Path(sys.argv[1]))
q = np.load(sys.argv[2])
first = ix.search(q, 10)[1].tolist()
print("ready", flush=True)
sys.stdin.readline()  # the parent merges again meanwhile
print(json.dumps({"first": first, "again": ix.search(q, 10)[1].tolist(), "n": ix.ntotal}), flush=True)
"""


def _shards(tmp_path: Path) -> tuple[Any, list[Path], np.ndarray]:
    v = clustered(3000, 32, centres=12)
    trained = train_empty(v[::3], "IVF8,PQ8x4", IndexSettings())
    bounds = [0, 1000, 1700, 3000]
    shards = [write_shard(trained, v[a:b], a, tmp_path / "shards" / f"{i}.faiss")
              for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]
    q = clustered(5, 32, centres=12, seed=5)
    np.save(tmp_path / "q.npy", q)
    return trained, shards, q


def _reader(tmp_path: Path, merged: Path) -> subprocess.Popen[str]:
    """A process serving ``merged`` (a crash there, SIGBUS, cannot take the test run with it)."""
    p = subprocess.Popen([sys.executable, "-c", READER, str(merged), str(tmp_path / "q.npy")], text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def test_a_remerge_leaves_a_process_serving_the_old_pair_answering(tmp_path: Path) -> None:
    trained, shards, _ = _shards(tmp_path)
    merged = merge_on_disk(trained, shards, tmp_path / "m")
    reader = _reader(tmp_path, merged)
    merge_on_disk(trained, shards[:1], tmp_path / "m")  # fewer rows: FAISS used to truncate the file it maps
    out, _ = reader.communicate("go\n")
    assert reader.returncode == 0, f"the reader died ({reader.returncode}; -7 is SIGBUS)"
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["again"] == seen["first"] and seen["n"] == 3000
    after = _reader(tmp_path, merged)  # a new reader gets the new pair, whole
    out, _ = after.communicate("go\n")
    assert after.returncode == 0 and json.loads(out.strip().splitlines()[-1])["n"] == 1000
    kept = sorted(p.suffix for p in (tmp_path / "m").iterdir() if p.name != ".merge.lock")  # merges take turns on it
    assert kept == [".faiss", ".ivfdata"]  # the old lists are gone


def test_a_merge_that_fails_leaves_the_old_pair_loadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss.contrib.ondisk as ondisk

    trained, shards, _ = _shards(tmp_path)
    merged = merge_on_disk(trained, shards, tmp_path / "m")
    before = sorted(p.name for p in (tmp_path / "m").iterdir())
    real = ondisk.merge_ondisk

    def dies_half_way(*args: Any, **kw: Any) -> None:
        real(*args, **kw)  # the lists are written, the index is not
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(ondisk, "merge_ondisk", dies_half_way)
    with pytest.raises(RuntimeError, match="No space"):
        merge_on_disk(trained, shards[:2], tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == before  # nothing half-written left either
    reader = _reader(tmp_path, merged)
    out, _ = reader.communicate("go\n")
    assert reader.returncode == 0 and json.loads(out.strip().splitlines()[-1])["n"] == 3000


def test_two_merges_into_one_directory_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second merge that ran inside the first removed the first one's new lists in its clean-up, and the first
    then published a merged.faiss naming a deleted file."""
    import threading

    import faiss.contrib.ondisk as ondisk

    from recsys.index.shards import open_merged

    trained, shards, _ = _shards(tmp_path)
    real, inside, second_done = ondisk.merge_ondisk, threading.Event(), threading.Event()

    def first_waits(*args: Any, **kw: Any) -> None:
        real(*args, **kw)
        if not inside.is_set():  # the first merge: let the second one start, and give it time to run through
            inside.set()
            second_done.wait(3)

    monkeypatch.setattr(ondisk, "merge_ondisk", first_waits)
    errors: list[BaseException] = []

    def second() -> None:
        inside.wait()
        try:
            merge_on_disk(trained, shards[:2], tmp_path / "m")
        except BaseException as e:  # reported below
            errors.append(e)
        second_done.set()

    t = threading.Thread(target=second)
    t.start()
    merge_on_disk(trained, shards, tmp_path / "m")
    t.join()
    assert not errors
    assert len(list((tmp_path / "m").glob("merged.*.ivfdata"))) == 1
    assert open_merged(tmp_path / "m" / "merged.faiss").ntotal == 1700  # the second merge, run after the first


# -- recsys index rollback|verify ---------------------------------------------------------------------------------


def _fit_heads(home: Path, version: str, dim: int) -> str:
    """Fitted heads as `recsys encoder fit` leaves them, as far as the rollback reads them: the configured encoder."""
    preset = get_settings().encoder.preset
    d = home / "encoders" / preset / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"version": version, "dim": dim}))
    (d.parent / "CURRENT").write_text(version)
    return f"{preset}@{version}"


def test_rollback_judges_by_the_configured_encoder(home: Path) -> None:
    root, runner = index_root(get_settings()), CliRunner()
    mine = _fit_heads(home, "v1", 16)
    good = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id=mine).generation_id
    other = build_generation(root, ids(40), {"fused": clustered(40, 8)}, encoder_id="other-enc@1",
                             make_current=False).generation_id
    res = runner.invoke(app, ["rollback", "--to", other])
    assert isinstance(res.exception, IncompatibleArtifact) and current_id(root) == good
    assert f"configured encoder '{mine}' (16-d)" in res.exception.message
    assert f"The configured encoder serves {good}" in res.exception.message
    assert runner.invoke(app, ["rollback", "--to", other, "--force"]).exit_code == 0 and current_id(root) == other
    # back to the generation queries can use: no --force needed to undo a --force
    res = runner.invoke(app, ["rollback", "--to", good])
    assert res.exit_code == 0, res.exception
    assert current_id(root) == good
    assert runner.invoke(app, ["rollback", "--to", other, "--force"]).exit_code == 0
    assert runner.invoke(app, ["rollback"]).exit_code == 0 and current_id(root) == good


def _edit(gen: Path, **fields: Any) -> None:
    m = json.loads((gen / MANIFEST).read_text())
    for k, v in fields.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    (gen / MANIFEST).write_text(json.dumps(m))


def _verify(*args: str) -> tuple[int, str, dict[str, Any]]:
    res = CliRunner().invoke(app, ["verify", *args, "--json"])
    return res.exit_code, res.stderr, json.loads(res.stdout.strip().splitlines()[-1])


def test_verify_checks_the_manifest_and_opens_the_generation(home: Path) -> None:
    root = index_root(get_settings())
    v = clustered(40)
    gid = build_generation(root, ids(40), {"fused": v}, encoder_id="e").generation_id
    gen = generations_dir(root) / gid
    original = (gen / MANIFEST).read_text()
    rc, said, out = _verify()
    assert rc == 0 and said.strip() == f"generation {gid}: intact" and out["ok"] and out["notes"] == []
    seg = json.loads(original)["segments"]
    seg[0]["count"] = 39
    _edit(gen, segments=seg, item_count=39)  # the loader trusts these: every search failed, verify said intact
    rc, said, out = _verify()
    assert rc == 1 and out["bad_files"] == [MANIFEST] and "intact" not in said
    with pytest.raises(Exception, match="manifest.json"):
        IndexReader.open(root)  # nor does a server load it
    (gen / MANIFEST).write_text(original)
    _edit(gen, encoder_id="someone-else@2")  # what the generation is judged compatible by
    assert _verify(gid)[0] == 1
    from recsys.index.layout import check_on_load, read_manifest
    with pytest.raises(Exception, match="manifest.json"):  # a generation over the hashing budget: still checked
        check_on_load(gen, read_manifest(gen), budget_mb=0.0)
    # a generation built before manifests were checksummed: said so, and still opened as a server opens it
    (gen / MANIFEST).write_text(original)
    _edit(gen, manifest_checksum=None)
    rc, said, out = _verify()
    assert rc == 0 and "manifest not checksummed (older generation)" in said and out["ok"]
    _edit(gen, segments=seg, item_count=39)
    rc, said, out = _verify()
    assert rc == 1 and out["bad_files"] == [] and "segments hold 39 rows, metadata 40" in out["problems"][0]
    assert "cannot be loaded" in said
    (gen / MANIFEST).write_text(original)
    _edit(gen, manifest_checksum=None, dim=32)
    assert "holds 16-d vectors, the manifest says 32" in _verify()[2]["problems"][0]


def test_verify_of_the_only_generation_does_not_recommend_a_rollback(home: Path) -> None:
    root = index_root(get_settings())
    gid = build_generation(root, ids(40), {"fused": clustered(40)}, encoder_id="e").generation_id
    index_file = generations_dir(root) / gid / "seg0" / "fused.faiss"
    index_file.write_bytes(index_file.read_bytes()[:100])
    rc, said, _ = _verify()
    assert rc == 1 and "`recsys index build --full`" in said and "recsys index rollback" not in said
    build_generation(root, ids(40), {"fused": clustered(40, seed=1)}, encoder_id="e")
    assert "`recsys index rollback --to" in _verify(gid)[1]  # the oldest one: plain rollback has nothing before it


# -- a bad factory string ------------------------------------------------------------------------------------------


class _Reached(Exception):
    """The build went on to read the catalogue."""


class _Store:
    def session(self) -> Any:
        raise _Reached


def _never_read(settings: Settings, store: Any) -> Any:
    raise _Reached


@pytest.mark.parametrize("how", ["option", "setting"])
def test_a_bad_factory_is_refused_before_the_vectors_are_read(tmp_path: Path, how: str) -> None:
    def build(factory: str) -> None:
        settings = Settings(home=tmp_path, index=IndexSettings(factory=factory if how == "setting" else None))
        build_from_catalog(_Store(), settings, factory=factory if how == "option" else None, vectors=_never_read)

    with pytest.raises(ValidationFailed, match="bad FAISS factory string 'Bogus12'"):
        build("Bogus12")
    with pytest.raises(ValidationFailed, match="without IDMap"):
        build("IDMap,Flat")
    for fine in ("HNSW32,Flat", "OPQ96,IVF1024,PQ96x7", "PQ100"):  # PQ100 fits some d: the build, knowing d, judges
        with pytest.raises(_Reached):
            build(fine)

