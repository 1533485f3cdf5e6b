"""Browser fixtures: the explorer served by uvicorn on a free loopback port over a copy of the built demo, and a
headless Debian Chromium driven by Playwright (never a browser downloaded by ``playwright install``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_fixture import ARTIFACTS, ROOT, built_demo, private_home

CHROMIUM = os.environ.get("RECSYS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHOTS = ARTIFACTS / "browser"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ExplorerServer:
    """``uvicorn --factory recsys.api.app:app_from_env`` on 127.0.0.1 with auth off (the demo default)."""

    def __init__(self, home: Path, log: Path, media: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "RECSYS_HOME": str(home), "RECSYS_API__AUTH": "false",
               "RECSYS_API__RATE_LIMIT_PER_MINUTE": "0", "RECSYS_API__MEDIA_ROOTS": json.dumps([str(media)])}
        env.pop("RECSYS_DATABASE_URL", None)
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "recsys.api.app:app_from_env", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_polls: int = 1200) -> None:
        import httpx

        for _ in range(timeout_polls):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the server did not become ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def _chromium_missing() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium chromium-driver, or set RECSYS_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; never `playwright install`)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = _chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def explorer(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExplorerServer]:
    """The explorer over a private copy of the built demo (the browser fixture first: no build without Chromium)."""
    home, demo = built_demo(tmp_path_factory)
    root = tmp_path_factory.mktemp("explorer")
    server = ExplorerServer(private_home(home, root / "home"), root / "server.log", demo)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_demo(tmp_path_factory)[1]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(120_000)
    pg.errors = errors
    yield pg
    context.close()


def screenshot(page: Any, name: str, *, top: bool = True) -> Path:
    """Save a screenshot under test-artifacts/browser/ and refresh docs/screenshots/ (the README's pictures)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if top:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path))
    docs = ROOT / "docs" / "screenshots"
    if os.environ.get("RECSYS_UPDATE_SCREENSHOTS") == "1" or not (docs / path.name).exists():
        from PIL import Image

        docs.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:  # 256 colours: a third of the size, same look for flat UI pictures
            img.convert("RGB").quantize(256).save(docs / path.name, optimize=True)
    return path
