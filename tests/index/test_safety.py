"""A build killed with SIGKILL anywhere leaves the served generation intact; queries go on during builds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from recsys.config import IndexSettings
from recsys.index import IndexHandle, IndexReader, build_generation, current_id, list_generations
from tests.index.fixtures import clustered, ids

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import recsys.index.build as b
    from recsys.config import IndexSettings

    target = sys.argv[2]

    def checkpoint(name):
        print("AT", name, flush=True)
        if name == target:
            time.sleep(600)

    b._checkpoint = checkpoint
    rng = np.random.default_rng(1)
    v = rng.standard_normal((300, 16)).astype(np.float32)
    b.build_generation(sys.argv[1], [f"x{i}" for i in range(300)], {"fused": v, "text": v}, encoder_id="e",
                       factory="HNSW8,Flat", settings=IndexSettings(keep_generations=1))
    print("DONE", flush=True)
""")

POINTS = ["started", "index_written:fused", "index_written:text", "meta_written", "manifest_written", "renamed",
          "switched"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_during_build_keeps_serving(tmp_path: Path, point: str) -> None:
    v = clustered(100)
    old = build_generation(tmp_path, ids(100), {"fused": v, "text": v}, encoder_id="e",
                           settings=IndexSettings()).generation_id
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), point], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == f"AT {point}":
            break
    else:  # pragma: no cover - the child died early
        pytest.fail(f"child never reached {point}: rc={proc.wait()}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    cur = current_id(tmp_path)
    gens = [m.generation_id for m in list_generations(tmp_path)]
    if point == "switched":
        assert cur != old and cur in gens  # the switch happened; the new generation is complete
    else:
        assert cur == old
    assert set(gens) <= {old, *gens} and all((tmp_path / "generations" / g / "manifest.json").is_file()
                                             for g in gens)
    r = IndexReader.open(tmp_path)
    assert len(r.search_one(v[0] if cur == old else r.vector_of("x1"), 5)) == 5
    # the next build takes the lock (released by the kernel), clears the leftovers and succeeds
    new = build_generation(tmp_path, ids(100), {"fused": v, "text": v}, encoder_id="e", settings=IndexSettings())
    assert current_id(tmp_path) == new.generation_id
    assert not any((tmp_path / "tmp").iterdir())


def test_queries_answered_during_builds(tmp_path: Path) -> None:
    v = clustered(2000)
    build_generation(tmp_path, ids(2000), {"fused": v}, encoder_id="e", settings=IndexSettings())
    handle = IndexHandle(tmp_path)
    stop = threading.Event()
    answered: list[int] = []
    errors: list[BaseException] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                handle.refresh()
                answered.append(len(handle.get().search_one(v[len(answered) % 2000], 10)))
            except BaseException as e:  # any failure fails the test
                errors.append(e)
                return

    t = threading.Thread(target=serve)
    t.start()
    seen = set()
    try:
        for seed in range(3):
            m = build_generation(tmp_path, ids(2000), {"fused": clustered(2000, seed=seed)}, encoder_id="e",
                                 factory="HNSW16,Flat", settings=IndexSettings())
            seen.add(m.generation_id)
    finally:
        stop.set()
        t.join()
    assert not errors and answered and set(answered) == {10}
    assert handle.get().generation_id in seen
