"""The build lock (``filelock``) excludes other threads and other processes, and a killed holder releases it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from recsys.index.layout import build_lock

REPO = Path(__file__).resolve().parents[2]


def _held_elsewhere(path: Path) -> bool:
    """Whether someone else holds the lock file: a fresh lock object that does not wait."""
    try:
        with FileLock(path, timeout=0):
            return False
    except Timeout:
        return True


def test_another_thread_is_excluded(tmp_path: Path) -> None:
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def holder() -> None:
        with build_lock(tmp_path, "changes.lock"):
            held.set()
            release.wait()
        done.set()

    t = threading.Thread(target=holder)
    t.start()
    try:
        held.wait()
        assert _held_elsewhere(tmp_path / "changes.lock")
        assert not _held_elsewhere(tmp_path / "build.lock")  # one lock per name
    finally:
        release.set()
        t.join()
    assert done.is_set() and not _held_elsewhere(tmp_path / "changes.lock")
    with build_lock(tmp_path, "changes.lock"):  # taken again by this thread once released
        pass


CHILD = textwrap.dedent("""
    import sys
    from recsys.index.layout import build_lock

    with build_lock(sys.argv[1]):
        print("HELD", flush=True)
        sys.stdin.readline()
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_another_process_is_excluded_until_it_dies(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "HELD"
        assert _held_elsewhere(tmp_path / "build.lock")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not _held_elsewhere(tmp_path / "build.lock")  # released by the kernel with the process
    assert (tmp_path / "build.lock").exists()  # the file stays: later waiters lock the same inode
