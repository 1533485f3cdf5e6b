"""`recsys serve --workers N`: uvicorn's supervisor closes its own copy of the listening socket as soon as it is
told to stop (before, it held it while the workers drained, and connections the kernel completed meanwhile were
reset when it exited), and a worker that died is logged as a warning."""

from __future__ import annotations

import importlib
import logging
import signal
import socket
from types import SimpleNamespace
from unittest import mock

import pytest

from recsys.cli.serve import _supervisor


def test_the_supervisor_closes_its_listening_socket_before_the_workers_drain() -> None:
    module = importlib.import_module("uvicorn.main")
    original = module.Multiprocess
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        with _supervisor():
            assert module.Multiprocess is not original
            sup = module.Multiprocess(SimpleNamespace(workers=2), sockets=[sock])
            sup.terminate_all()  # no worker started: what it does with its own socket is what is tested
        assert sock.fileno() == -1
        assert module.Multiprocess is original
    finally:
        sock.close()
        for s, h in handlers.items():
            signal.signal(s, h)


def test_an_exited_worker_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    module = importlib.import_module("uvicorn.main")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    restarted: list[int] = []
    try:
        with _supervisor():
            sup = module.Multiprocess(SimpleNamespace(workers=1), sockets=[])
            dead = SimpleNamespace(pid=4242, exitcode=-9)
            sup.processes = [dead]
            with caplog.at_level(logging.WARNING, logger="recsys.cli.serve"), \
                    mock.patch.object(importlib.import_module("uvicorn.supervisors.multiprocess").Multiprocess,
                                      "keep_subprocess_alive", lambda self: restarted.append(1)):
                sup.keep_subprocess_alive()
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert restarted == [1]  # uvicorn's own round still starts another
    assert [(r.levelno, "4242" in r.getMessage()) for r in caplog.records] == [(logging.WARNING, True)]
