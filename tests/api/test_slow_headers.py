"""`recsys serve` closes connections whose request headers do not arrive in time (slowloris), on a new connection
and on a kept-alive one, while complete requests are served as before."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import httpx

from tests.api.servers import Server

SERVE = [sys.executable, "-c", "from recsys.cli.serve import run_serve; from recsys.config import get_settings; "
                               "run_serve(get_settings(), port={port})"]


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):  # the socket's timeout bounds a server that never closes
        data += chunk
    return data


def test_slow_headers_get_408_and_the_connection_closed(tmp_path: Path) -> None:
    env = {"RECSYS_HOME": str(tmp_path / "home"), "RECSYS_API__AUTH": "false", "RECSYS_DATABASE_URL": "",
           "RECSYS_API__HEADER_TIMEOUT_S": "0.5"}
    with Server(env, log=tmp_path / "server.log", args=SERVE) as server:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # and never the rest
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 408")
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = sock.recv(4096)
            assert first.startswith(b"HTTP/1.1 200"), first
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127")  # the next request on the kept-alive connection
            assert b"HTTP/1.1 408" in _read_until_closed(sock)  # (after the first answer's body, if not read yet)
        assert httpx.get(server.url + "/healthz", timeout=30).status_code == 200


def test_a_body_that_stops_coming_gets_408_while_a_steady_one_is_served(tmp_path: Path) -> None:
    env = {"RECSYS_HOME": str(tmp_path / "home"), "RECSYS_API__AUTH": "true", "RECSYS_DATABASE_URL": "",
           "RECSYS_API__HEADER_TIMEOUT_S": "0.5"}
    with Server(env, log=tmp_path / "server.log", args=SERVE) as server:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:  # no key needed to hold it
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"events\": [")  # and then nothing more
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 408")
        body = b'{"events": []}' + b" " * 3000  # sent in pieces within each window: served (here: refused, no key)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
            for i in range(0, len(body), 1000):
                sock.sendall(body[i:i + 1000])
                time.sleep(0.3)
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 401")
