"""`make demo` with its port taken suggests a port to try, not the one that is busy."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_a_busy_port_suggests_the_next_one() -> None:
    # with 8001 held, "make demo PORT=8001" was suggested back (the number was written into the Makefile)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "demo-port", f"PORT={port}",
                              f"PYTHON={sys.executable}"], capture_output=True, text=True, check=False)
    assert res.returncode != 0
    assert f"port {port} is busy" in res.stdout and f"make demo PORT={port + 1}" in res.stdout, res.stdout
