"""Metrics over several worker processes: prometheus_client's multiprocess mode sums what each process wrote to
PROMETHEUS_MULTIPROC_DIR; without it (one process) /metrics is the app's own registry, as before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from recsys.api.metrics import Metrics, multiprocess_mode
from recsys.cli.serve import metrics_dir

WORKER = """
import sys
from recsys.api.metrics import Metrics
m = Metrics()
assert m.multiprocess
for _ in range(int(sys.argv[1])):
    m.requests.labels("GET", "/v1/trending", "200").inc()
    m.latency.labels("/v1/trending").observe(0.01)
m.events.labels("stored").inc(2)
m.in_flight.inc()
m.set_status({"index_generation": "gen-1", "ranker_version": "r1", "encoder_id": "e"}, True)
m.set_status({"index_generation": sys.argv[2], "ranker_version": "r1", "encoder_id": "e"}, sys.argv[3] == "ready")
if sys.argv[4] == "exit":
    m.close()
else:  # this worker answers the scrape
    sys.stdout.buffer.write(m.render())
"""


def _run(code: str, directory: Path, *args: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_multiprocess_collector_sums_the_workers(tmp_path: Path) -> None:
    _run(WORKER, tmp_path, "4", "gen-1", "unready", "exit")  # a worker that has exited
    got = _samples(_run(WORKER, tmp_path, "3", "gen-2", "ready", "scrape"))  # a live worker answers the scrape
    route = (("method", "GET"), ("route", "/v1/trending"), ("status", "200"))
    assert got[("recsys_http_requests_total", route)] == 7.0
    assert got[("recsys_http_request_duration_seconds_count", (("route", "/v1/trending"),))] == 7.0
    assert got[("recsys_events_total", (("status", "stored"),))] == 4.0
    assert got[("recsys_http_requests_in_flight", ())] == 1.0  # live gauges count live workers only
    assert got[("recsys_ready", ())] == 1.0
    generation = {labels: v for (name, labels), v in got.items() if name == "recsys_generation_info"}
    assert generation == {(("encoder_id", "e"), ("index_generation", "gen-1"), ("ranker_version", "r1")): 0.0,
                          (("encoder_id", "e"), ("index_generation", "gen-2"), ("ranker_version", "r1")): 1.0}


def test_single_process_metrics_are_the_apps_own() -> None:
    assert not multiprocess_mode()
    a, b = Metrics(), Metrics()
    a.requests.labels("GET", "/healthz", "200").inc()
    a.set_status({"index_generation": "gen-1"}, True)
    text = a.render().decode()
    got = _samples(text)
    assert got[("recsys_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))] == 1
    assert got[("recsys_generation_info", (("encoder_id", ""), ("index_generation", "gen-1"),
                                           ("ranker_version", "")))] == 1
    assert "/healthz" not in b.render().decode()  # two apps in one process never share samples


def test_serve_gets_a_fresh_metrics_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    dead = tmp_path / "prometheus" / "serve-999999999"  # left by a server that was killed
    dead.mkdir(parents=True)
    (dead / "counter_1.db").write_bytes(b"x")
    mine = tmp_path / "prometheus" / f"serve-{os.getpid()}"
    mine.mkdir()
    (mine / "counter_2.db").write_bytes(b"x")  # a pid reused: its samples are not this server's
    with metrics_dir(tmp_path) as path:
        assert path == mine and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
        assert not dead.exists() and list(path.iterdir()) == []
    assert not path.exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "operator"))
    with metrics_dir(tmp_path) as path:
        assert path == tmp_path / "operator"


@pytest.mark.slow
def test_serve_with_two_workers_counts_and_limits_as_one(tmp_path: Path) -> None:
    """`recsys serve --workers 2`: every /metrics answer counts the requests of both workers; with a shared Redis,
    a rate limit of N per minute admits N per key over both workers, not 2N."""
    import uuid

    import httpx

    from recsys.api.auth import create_key
    from recsys.config import Settings
    from recsys.store import Store
    from tests.api.servers import Server
    from tests.api.test_limits import redis_url

    home = tmp_path / "home"
    store = Store.open(Settings(home=home))
    limited, _ = create_key(store, f"limited-{uuid.uuid4().hex}", "read")  # fresh Redis counters on every run
    scraper, _ = create_key(store, f"scraper-{uuid.uuid4().hex}", "read")
    store.dispose()
    redis = redis_url()  # without one, the metrics half runs alone
    env = {"RECSYS_HOME": str(home), "RECSYS_API__RATE_LIMIT_PER_MINUTE": "15" if redis else "0",
           "RECSYS_API__RATE_LIMIT_STORAGE": redis or "memory://", "RECSYS_API__RATE_LIMIT_STRATEGY": "moving-window"}
    args = [sys.executable, "-c", "from recsys.cli import main; main()", "serve", "--port", "{port}",
            "--workers", "2", "--no-banner"]
    with Server(env, log=tmp_path / "serve.log", args=args) as server:
        server.wait_ready()  # one /healthz answered

        def answered_by() -> int:  # workers that have timed a request (a latency file each)
            return len(list((home / "prometheus").glob("serve-*/histogram_*.db")))

        sent = 0
        while sent < 40 or (answered_by() < 2 and sent < 2000):  # a connection each: spread over the workers
            assert httpx.get(server.url + "/healthz").status_code == 200
            sent += 1
        assert answered_by() == 2
        codes = [httpx.get(server.url + "/v1/status", headers={"X-API-Key": limited}).status_code
                 for _ in range(30)]
        expected = {"200": 15, "429": 15} if redis else {"200": 30, "429": 0}
        assert codes.count(200) == expected["200"] and codes.count(429) == expected["429"], codes
        for _ in range(6):
            text = httpx.get(server.url + "/metrics", headers={"X-API-Key": scraper}).text
            got = _samples(text)
            healthz = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
            assert got[("recsys_http_requests_total", healthz)] == sent + 1, text
            status = {s: got.get(("recsys_http_requests_total", (("method", "GET"), ("route", "/v1/status"),
                                                                   ("status", s))), 0) for s in ("200", "429")}
            assert status == expected, text


POOL_WORKER = """
import sys
from recsys.api.metrics import Metrics
m = Metrics()
stats = {"pool_size": 3, "pool_available": 2, "requests_waiting": 1, "connections_errors": 4, "requests_errors": 0,
         "connections_lost": 1, "returns_bad": 1}
m.pool_source = lambda: stats
m.observe_pool()
stats = {**stats, "connections_errors": 5}  # one more failure: the counter grows by the difference
if sys.argv[1] == "exit":
    m.observe_pool()
    m.close()
else:
    sys.stdout.buffer.write(m.render())
"""


def test_pool_stats_are_summed_over_the_workers(tmp_path: Path) -> None:
    _run(POOL_WORKER, tmp_path, "exit")  # its connections closed with it; its errors stay counted
    got = _samples(_run(POOL_WORKER, tmp_path, "scrape"))
    assert got[("recsys_db_pool_connections", ())] == 3.0  # the live worker's only
    assert got[("recsys_db_pool_available", ())] == 2.0
    assert got[("recsys_db_pool_waiting", ())] == 1.0
    assert got[("recsys_db_pool_errors_total", (("kind", "connect"),))] == 10.0
    assert got[("recsys_db_pool_errors_total", (("kind", "lost"),))] == 4.0
    assert got[("recsys_db_pool_errors_total", (("kind", "wait"),))] == 0.0
