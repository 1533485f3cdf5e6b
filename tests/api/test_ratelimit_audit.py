"""Rate limits audit: a storage that answers but refuses recsys is refused at start-up (an ERROR while running), no
storage password in any message, /media's 429 and 503 say when to retry, one definition of loopback with auth off."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from recsys.api.limits import RateLimiter
from recsys.api.testing import FakeRecommender
from recsys.errors import ConfigError, StoreBusy
from recsys.store import Store
from tests.api.conftest import api_settings
from tests.conftest import run_async

PASSWORD = "Right-Pa55word"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    """A private redis-server (never the shared one) that asks for ``PASSWORD``, once it answers."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", PASSWORD],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):  # attempts, not a time limit: it may start slowly on a loaded machine
        if proc.poll() is not None:
            pytest.skip(f"redis-server did not start (exit {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.skip("redis-server did not start listening")


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    pytest.importorskip("redis")
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH")
    port = _free_port()
    proc = _redis(port, tmp_path)
    yield port
    proc.terminate()
    proc.wait()


# D1 and the lead (a database path that is not a number)
def test_a_redis_that_refuses_recsys_refuses_the_start(redis_port: int) -> None:
    with pytest.raises(ConfigError) as e:
        RateLimiter(5, f"redis://:wr0ngPW@127.0.0.1:{redis_port}/0")
    said = str(e.value)
    assert "wr0ngPW" not in said and ":***@127.0.0.1" in said and "RECSYS_API__RATE_LIMIT_STORAGE" in said, said
    assert "AuthenticationError" in said and "\n" not in said, said
    with pytest.raises(ConfigError, match="database number"):  # a database the server does not have
        RateLimiter(5, f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/99")
    with pytest.raises(ConfigError, match="'abc' is not a number"):
        RateLimiter(5, f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/abc")
    right = RateLimiter(2, f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/3", strategy="moving-window")
    found = run_async(right.check("key:audit"))
    assert found is not None and found.allowed and found.remaining == 1
    RateLimiter(0, f"redis://:wr0ngPW@127.0.0.1:{redis_port}/0")  # limits off: the storage is never used


def test_a_refusal_while_running_is_an_error_not_an_outage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Redis down at start-up (fail open, the server starts), then up with a password recsys does not send."""
    pytest.importorskip("redis")
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH")
    port = _free_port()
    limiter = RateLimiter(5, f"redis://127.0.0.1:{port}/0")
    proc = _redis(port, tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="recsys.api.limits"):
            assert run_async(limiter.check("key:audit")) is None  # admitted: fail open, as documented
    finally:
        proc.terminate()
        proc.wait()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "refuses recsys" in errors[0].getMessage() and "unreachable" not in errors[0].getMessage()
    assert "RECSYS_API__RATE_LIMIT_STORAGE" in errors[0].getMessage()


# D2
@pytest.mark.parametrize("uri", ["redis://app:S3cretPassw0rd@127.0.0.1:6379x/7",
                                 "async+redis://app:S3cretPassw0rd@127.0.0.1:6379x/7",
                                 "redis://app:S3cret%40Passw0rd@127.0.0.1:6379x/7"])
def test_an_unparsable_storage_uri_never_shows_its_password(uri: str) -> None:
    with pytest.raises(ConfigError) as e:
        RateLimiter(10, uri)
    assert "S3cret" not in str(e.value) and "Passw0rd" not in str(e.value), str(e.value)
    assert "app:***@127.0.0.1:6379x/7" in str(e.value)


# D3
def test_media_over_the_limit_says_when_to_retry(sqlite_store: Store, tmp_path: Path,
                                                 make_client: Callable[..., TestClient],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "media"
    root.mkdir()
    Image.new("RGB", (8, 8), "red").save(root / "a.png", format="PNG")
    fake = FakeRecommender(sqlite_store, [{"item_id": "ok", "title": "ok",
                                           "media": [{"kind": "image", "uri": str(root / "a.png"), "status": "ok",
                                                      "error": None}]}])
    client = make_client(fake, media_roots=[root], rate_limit_per_minute=1, rate_limit_strategy="moving-window")
    first, over = client.get("/media/ok"), client.get("/media/ok")
    assert first.status_code == 200 and over.status_code == 429
    assert int(over.headers["retry-after"]) == int(over.headers["ratelimit-reset"]) >= 1
    assert over.headers["ratelimit-limit"] == "1" and over.headers["ratelimit-remaining"] == "0"
    assert over.headers["content-type"].startswith("text/plain") and "retry in" in over.text

    from recsys.api.web import pages

    def busy(*args: object, **kwargs: object) -> None:
        raise StoreBusy("database is locked")

    monkeypatch.setattr(pages, "media_file", busy)
    unlimited = make_client(fake, media_roots=[root], retry_after_seconds=7)
    r = unlimited.get("/media/ok")
    assert r.status_code == 503 and r.headers["retry-after"] == "7"


# D4
def test_auth_off_serves_one_loopback(tmp_path: Path, fake: FakeRecommender) -> None:
    from recsys.api import create_app
    from recsys.cli.serve import is_loopback, run_serve

    assert not is_loopback("127.0.0.2") and is_loopback("127.0.0.1") and is_loopback("::1")
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1, ::1 or localhost"):
        run_serve(api_settings(tmp_path), host="127.0.0.2", port=_free_port(), auth=False)
    app = create_app(api_settings(tmp_path), fake)
    with TestClient(app, client=("127.0.0.3", 5000), base_url="http://127.0.0.1:8000") as other:
        r = other.get("/v1/trending")
    assert r.status_code == 403 and "127.0.0.1 or ::1" in r.json()["detail"], r.text
    assert "only loopback clients" not in r.text
