"""Test helpers: a uvicorn server in a subprocess on a loopback port, and a TCP proxy we can cut."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_items(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"item_id": f"i{i}", "title": f"item {i}", "category": f"c{i % 3}"}) + "\n"
                            for i in range(n)))
    return path


class Server:
    """``python -m uvicorn --factory recsys.api.app:app_from_env`` on 127.0.0.1, settings from ``env``; ``args``
    replaces the command (``{port}`` in it becomes the port). In a process group of its own, killed whole."""

    def __init__(self, env: dict[str, str], *, log: Path, args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "recsys.api.app:app_from_env", "--host", "127.0.0.1",
               "--port", "{port}", "--no-access-log", "--log-level", "warning"] if args is None else args
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen([a.replace("{port}", str(self.port)) for a in cmd], cwd=ROOT,
                                     env=_merged_env(env),
                                     stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, path: str = "/healthz", attempts: int = 600) -> None:
        for _ in range(attempts):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not come up: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # no shutdown handlers run; worker processes too
        self.proc.wait()
        self._log_file.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


class Traffic:
    """Steady GET traffic in background threads, one per ``(server, paths)`` target cycling through its paths, that
    counts every outcome (status code or transport error) and the index generations answers came from, per server:
    the evidence for "zero failed requests while ..." checks. A context manager: traffic runs inside the block."""

    def __init__(self, targets: list[tuple[Server, list[str]]], *, pause: float = 0.0, timeout: float = 120) -> None:
        self.pause, self.timeout = pause, timeout
        self.outcomes: dict[str, Counter[str]] = {s.url: Counter() for s, _ in targets}
        self.generations: dict[str, set[str]] = {s.url: set() for s, _ in targets}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=t) for t in targets]

    def _run(self, server: Server, paths: list[str]) -> None:
        with httpx.Client(base_url=server.url, timeout=self.timeout) as http:
            i = 0
            while not self._stop.is_set():
                gen = None
                try:
                    r = http.get(paths[i % len(paths)])
                    outcome = str(r.status_code)
                    if r.status_code == 200:
                        body = r.json()
                        gen = body.get("index_generation") or (body.get("meta") or {}).get("index_generation")
                except httpx.HTTPError as e:
                    outcome = type(e).__name__
                i += 1
                with self._lock:
                    self.outcomes[server.url][outcome] += 1
                    if gen:
                        self.generations[server.url].add(gen)
                if self.pause:
                    self._stop.wait(self.pause)

    def failures(self) -> dict[str, Counter[str]]:
        """Per server, the outcomes other than 200 (empty when every request succeeded)."""
        return {url: Counter({k: v for k, v in c.items() if k != "200"}) for url, c in self.outcomes.items()
                if set(c) - {"200"}}

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


class TcpProxy:
    """127.0.0.1:port -> target; :meth:`cut` closes the listener and every connection (like a stopped server),
    :meth:`restore` listens again on the same port; :meth:`hang` holds every byte without closing anything (a hung
    server or network) until :meth:`resume`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            ls, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if ls is not None:
            _close(ls)
        for c in conns:
            _close(c)

    close = cut

    def hang(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not ls:
                    _close(client)
                    _close(upstream)
                    return
                self._conns += [client, upstream]
            threading.Thread(target=_pump, args=(client, upstream, self._flowing), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client, self._flowing), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
    try:
        while data := src.recv(65536):
            flowing.wait()
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


def _merged_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``env`` over it; a variable ``env`` gives as "" is unset (recsys refuses an
    empty RECSYS_DATABASE_URL: the tests mean "not the developer's database")."""
    merged = {**os.environ, "RECSYS_LOG_LEVEL": "WARNING", **env}
    return {k: v for k, v in merged.items() if v != "" or k not in env}
