"""``memcached://`` rate-limit storage, as documented: the ``memcached`` extra installs its client, and with it the
limit is shared across app instances (a memcached server at RECSYS_TEST_MEMCACHED_URL, default
memcached://127.0.0.1:11211, or skipped)."""

from __future__ import annotations

import importlib.util
import os
import socket
import tomllib
import uuid
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from recsys.api.limits import RateLimiter
from tests.conftest import run_async


def test_the_memcached_extra_installs_the_client_the_storage_needs() -> None:
    from limits.aio.storage import MemcachedStorage

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    extra = {Requirement(r).name for r in project["optional-dependencies"]["memcached"]}
    assert set(MemcachedStorage.DEPENDENCIES) & extra == {"memcachio"}


def _server() -> str:
    url = os.environ.get("RECSYS_TEST_MEMCACHED_URL", "memcached://127.0.0.1:11211")
    host, _, port = url.removeprefix("memcached://").partition(":")
    if importlib.util.find_spec("memcachio") is None:
        pytest.skip("the memcached extra is not installed")
    try:
        socket.create_connection((host, int(port or 11211)), timeout=1).close()
    except OSError:
        pytest.skip(f"no memcached server at {url} (RECSYS_TEST_MEMCACHED_URL)")
    return url


def test_a_memcached_limit_holds_across_instances() -> None:
    url, key = _server(), f"test-{uuid.uuid4().hex}"

    async def hits() -> list[bool]:
        a, b = RateLimiter(3, url), RateLimiter(3, url)  # two workers
        out = []
        for limiter in (a, b, a, b, a):
            status = await limiter.check(key)
            assert status is not None  # counted, not failed open
            out.append(status.allowed)
        return out

    assert run_async(hits()) == [True, True, True, False, False]
