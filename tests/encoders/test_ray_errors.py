"""`recsys embed --engine ray` with an address this machine cannot use: a one-paragraph recsys error before any work,
never a Ray traceback or minutes of "still at work". Ray is faked (``ray.init`` never reaches a cluster)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import socket
import sys
import types
from typing import Any

import pytest

from recsys.config import Settings
from recsys.encoders import ray_engine
from recsys.errors import ConfigError


def _no_init(**_: Any) -> None:
    raise AssertionError("ray.init must not be called for an address that was refused")


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A stand-in ``ray`` module whose ``init`` fails the test; Ray itself is never imported."""
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=_no_init)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else object())
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.60.0")
    return fake


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once it is closed


def test_a_ray_client_address_without_the_client_says_what_to_install(fake_ray: types.SimpleNamespace) -> None:
    with pytest.raises(ConfigError) as e:
        ray_engine.check_address("ray://head:10001")
    msg = e.value.message
    assert "--ray-address ray://head:10001" in msg and 'pip install "ray[client]==2.60.0"' in msg
    assert "\n" not in msg


def test_an_unreachable_address_fails_at_once_naming_it(fake_ray: types.SimpleNamespace) -> None:
    port = _closed_port()
    with pytest.raises(ConfigError) as e:
        ray_engine.check_address(f"127.0.0.1:{port}")
    assert f"--ray-address 127.0.0.1:{port}" in e.value.message and "firewall" in e.value.message


def test_a_silent_address_is_given_up_after_the_connect_timeout(fake_ray: types.SimpleNamespace,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []

    def silent(addr: tuple[str, int], timeout: float) -> socket.socket:
        waited.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", silent)
    monkeypatch.setenv("RAY_ADDRESS", "192.0.2.2:8646")  # what Ray reads for no --ray-address
    said = r"RAY_ADDRESS=192\.0\.2\.2:8646 \(192\.0\.2\.2:8646: no answer within 10 s\)"
    with pytest.raises(ConfigError, match=said):
        ray_engine.check_address(None)
    assert waited == [ray_engine.CONNECT_TIMEOUT_S]


def test_a_local_ray_is_not_probed(fake_ray: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "create_connection", _no_init)
    for address in (None, "auto", "local"):
        ray_engine.check_address(address)


def test_ray_init_failing_is_one_recsys_error(fake_ray: types.SimpleNamespace) -> None:
    def refuse(**_: Any) -> None:
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to")

    fake_ray.init = refuse
    with pytest.raises(ConfigError) as e:
        ray_engine._ensure_ray("10.0.0.1:6379")
    assert "--ray-address 10.0.0.1:6379: ConnectionError: Could not find any running Ray instance." in e.value.message


def test_the_embed_refuses_the_address_before_any_work(fake_ray: types.SimpleNamespace) -> None:
    seen: list[tuple[int, int]] = []

    class Unused:
        id = "never-read"

    with pytest.raises(ConfigError, match=r"--ray-address 127\.0\.0\.1"):
        ray_engine.embed_catalog_ray(None, Settings(), lambda d, t: seen.append((d, t)),  # type: ignore[arg-type]
                                     address=f"127.0.0.1:{_closed_port()}", encoder=Unused())  # type: ignore[arg-type]
    assert seen == []  # no items stage was shown: the store (None here) was never read
