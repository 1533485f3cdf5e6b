"""What an operator reads of a server: a worker killed without its lifespan's exit (SIGKILL, OOM) stops counting in
the live gauges (readiness, generation, requests in flight) while its counters keep counting; every event the server
stores counts in ``recsys_events_total``, the explorer's likes too; ``/readyz`` says why recommendations are off when
no ranker was ever trained; no index built yet is a state ``/readyz`` reports, not a refresh error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from recsys.api import create_app
from recsys.api import metrics as metrics_module
from recsys.api.app import Runtime
from recsys.api.auth import KeyRing
from recsys.api.errors import public_message
from recsys.api.metrics import Metrics
from recsys.api.testing import FakeRecommender
from recsys.config import Settings
from recsys.serving.generations import Generations
from recsys.store import Store
from tests.api.test_web_fixes import ORIGIN

KILLED = """
import os
from recsys.api.metrics import Metrics
m = Metrics()
m.requests.labels("GET", "/readyz", "503").inc(5)
m.in_flight.inc()  # killed mid-request
m.set_status({"index_generation": "gen-1", "ranker_version": "r1", "encoder_id": "e"}, False)
os._exit(0)  # no close(): as SIGKILL leaves it
"""
SCRAPER = """
import sys
from recsys.api.metrics import Metrics
m = Metrics()
m.requests.labels("GET", "/readyz", "200").inc()
m.set_status({"index_generation": "gen-2", "ranker_version": "r1", "encoder_id": "e"}, True)
sys.stdout.buffer.write(m.render())
"""


def _run(code: str, directory: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_workers_live_gauges_stop_counting_and_its_counters_stay(tmp_path: Path) -> None:
    _run(KILLED, tmp_path)
    got = _samples(_run(SCRAPER, tmp_path))
    assert got[("recsys_ready", ())] == 1.0  # the live worker is ready: the dead one's 0 no longer counts
    assert got[("recsys_http_requests_in_flight", ())] == 0.0
    generation = {labels[1][1]: v for (name, labels), v in got.items() if name == "recsys_generation_info"}
    assert generation == {"gen-2": 1.0}
    assert got[("recsys_http_requests_total", (("method", "GET"), ("route", "/readyz"), ("status", "503")))] == 5.0
    assert got[("recsys_http_requests_total", (("method", "GET"), ("route", "/readyz"), ("status", "200")))] == 1.0


def test_prune_marks_only_dead_processes_and_only_their_live_gauges(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    names = [f"gauge_livemin_{dead}.db", f"gauge_livesum_{dead}.db", f"gauge_livemax_{dead}.db",
             f"gauge_livemin_{alive}.db", f"counter_{dead}.db", f"histogram_{dead}.db", f"gauge_max_{dead}.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert metrics_module.prune_dead_workers(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])
    assert metrics_module.prune_dead_workers(tmp_path) == []


def test_a_like_from_the_explorer_counts_as_an_event(client: TestClient) -> None:
    metrics: Metrics = client.app.state.metrics  # type: ignore[attr-defined]

    def events(status: str) -> float:
        return metrics.registry.get_sample_value("recsys_events_total", {"status": status}) or 0.0

    r = client.post("/feedback", data={"user_id": "u1", "item_id": "s1"}, headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 303
    assert events("stored") == 1.0
    r = client.post("/feedback", data={"user_id": "u1", "item_id": "nope", "type": "dislike"}, headers=ORIGIN,
                    follow_redirects=False)
    assert r.status_code == 422
    assert (events("stored"), events("error")) == (1.0, 1.0)  # refused by the store: counted as /v1/events does


class NeverTrained(FakeRecommender):
    """An index served, and no ranker ever trained (``ranker_error`` None)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        super().__init__(store)
        self.generations = Generations(settings, store)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "ranker_version": None, "not_served": ["recommendations", "trending"],
                "ranker_error": None}


def test_readiness_says_why_when_no_ranker_was_ever_trained(sqlite_store: Store, tmp_path: Path,
                                                           make_client: Callable[..., TestClient]) -> None:
    rec = NeverTrained(sqlite_store, Settings(home=tmp_path / "home"))
    body = make_client(rec).get("/readyz").json()
    assert body["ready"] is True and body["not_served"] == ["recommendations", "trending"]
    assert body["reason"] == public_message(rec.generations.no_ranker())  # the words of the recommendations' 503
    assert "no ranker has been trained yet" in body["reason"]


def test_no_index_yet_is_no_refresh_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'store.db'}")
    settings.api = settings.api.model_copy(update={"auth": False, "refresh_seconds": 3600})
    with TestClient(create_app(settings)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        for _ in range(3):
            runtime.tick()
        assert "recsys build" in client.get("/readyz").json()["reason"]
        assert runtime.metrics.registry.get_sample_value("recsys_refresh_errors_total") == 0.0


class Failing(FakeRecommender):
    def refresh(self, *, strict: bool = False) -> bool:
        raise RuntimeError("the index directory cannot be read")


def test_a_failed_refresh_still_counts(sqlite_store: Store) -> None:
    runtime = Runtime(Failing(sqlite_store), Metrics(), KeyRing(sqlite_store))
    runtime.tick()
    assert runtime.metrics.registry.get_sample_value("recsys_refresh_errors_total") == 1.0
