"""Shards and merged pairs as a server holds them: a shard rewritten under a process serving it, and a merged pair
the serving process may read but not write (a read-only volume, files owned by the deploy user)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.config import IndexSettings
from recsys.index.shards import merge_on_disk, open_shards, train_empty, write_shard
from tests.index.fixtures import clustered

ROOT = Path(__file__).parents[2]

SERVER = """
import json, sys
from pathlib import Path
import numpy as np
from recsys.index.factory import search_params
from recsys.index.shards import open_shards
group = open_shards([Path(p) for p in sys.argv[2:]])  # memory-mapped, as served
q = np.load(sys.argv[1])
params = search_params(group, None, ef_search=0, nprobe=8)  # every list: pages at the end of each file too
first = group.search(q, 10, params=params)[1].tolist()
print("ready", flush=True)
sys.stdin.readline()  # the parent rewrites a shard meanwhile
print(json.dumps({"first": first, "again": group.search(q, 10, params=params)[1].tolist()}), flush=True)
"""


def test_rewriting_a_shard_leaves_a_process_serving_it_answering(tmp_path: Path) -> None:
    v = clustered(3000, 32, centres=12)
    trained = train_empty(v[::3], "IVF8,Flat", IndexSettings())
    shards = [write_shard(trained, v[:1500], 0, tmp_path / "0.faiss"),
              write_shard(trained, v[1500:], 1500, tmp_path / "1.faiss")]
    np.save(tmp_path / "q.npy", clustered(5, 32, centres=12, seed=5))
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path / "q.npy"), *map(str, shards)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    # the chunk written again, smaller: FAISS used to truncate the file the server maps (SIGBUS there)
    write_shard(trained, v[:50], 0, shards[0])
    out, _ = server.communicate("go\n")
    assert server.returncode == 0, f"the serving process died ({server.returncode}; -7 is SIGBUS)"
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["again"] == seen["first"]  # still the old shard, whole
    assert open_shards(shards).ntotal == 1550  # a new reader gets the new one, with its sidecar
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".npy") == [
        "0.faiss", "0.faiss.json", "1.faiss", "1.faiss.json"]  # no temporary file left


READER = """
import json, sys
from pathlib import Path
import numpy as np
from recsys.errors import ValidationFailed
from recsys.index.shards import open_merged
try:
    ix = open_merged(Path(sys.argv[1]))
except ValidationFailed as e:
    print(json.dumps({"error": e.message}))
else:
    print(json.dumps({"ids": ix.search(np.load(sys.argv[2]), 10)[1].tolist()}))
"""


def _read_as_other_user(merged: Path, q: Path) -> dict[str, Any]:
    """open_merged in a process that file permissions apply to: this user, or root without its capabilities (root
    reads and writes any file otherwise)."""
    cmd = [sys.executable, "-c", READER, str(merged), str(q)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    v = clustered(2000, 32, centres=12)
    trained = train_empty(v[::2], "IVF8,PQ8x4", IndexSettings())
    shards = [write_shard(trained, v[:1000], 0, tmp_path / "0.faiss"),
              write_shard(trained, v[1000:], 1000, tmp_path / "1.faiss")]
    merged = merge_on_disk(trained, shards, tmp_path / "m")
    q = clustered(5, 32, centres=12, seed=5)
    np.save(tmp_path / "q.npy", q)
    whole = trained
    whole.add(v)
    return merged, tmp_path / "q.npy", whole.search(q, 10)[1]


def test_a_merged_pair_the_server_may_only_read_is_served(tmp_path: Path) -> None:
    merged, q, want = _pair(tmp_path)
    files = [p for p in merged.parent.iterdir() if not p.name.startswith(".")]
    try:
        for p in files:
            p.chmod(0o444)  # shipped read-only; the directory too (a read-only volume)
        merged.parent.chmod(0o555)
        got = _read_as_other_user(merged, q)
    finally:
        merged.parent.chmod(0o755)
        for p in files:
            p.chmod(0o644)
    assert "error" not in got, got["error"]  # FAISS mapped the lists writable, so this was "Permission denied"
    assert (np.array(got["ids"]) == want).all()


def test_a_lists_file_it_may_not_read_is_named_as_such(tmp_path: Path) -> None:
    merged, q, _ = _pair(tmp_path)
    lists = next(merged.parent.glob("merged.*.ivfdata"))
    lists.chmod(0)
    try:
        said = _read_as_other_user(merged, q)["error"]
    finally:
        lists.chmod(0o644)
    assert "permission denied" in said and lists.name in said and "missing" not in said  # it is there
