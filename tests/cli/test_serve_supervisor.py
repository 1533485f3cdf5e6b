"""`recsys serve --workers N`: uvicorn's supervisor closes its own copy of the listening socket as soon as it is
told to stop (before, it held it while the workers drained, and connections the kernel completed meanwhile were
reset when it exited), and a worker that died is logged as a warning."""

from __future__ import annotations

import importlib
import logging
import signal
import socket
from types import SimpleNamespace

from recsys.cli.serve import _supervisor, _WorkerDied


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


def test_a_dead_worker_is_a_warning() -> None:
    died = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Child process [4242] died", None, None)
    other = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Child process [4242] started", None, None)
    assert _WorkerDied().filter(died) and _WorkerDied().filter(other)
    assert (died.levelno, died.levelname) == (logging.WARNING, "WARNING")
    assert other.levelno == logging.INFO
