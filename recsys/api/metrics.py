"""Prometheus metrics, one registry per app (so several apps in one process, e.g. in tests, never collide)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("recsys_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=r)
        self.latency = Histogram("recsys_http_request_duration_seconds", "Time to answer, by route", ["route"],
                                 buckets=_BUCKETS, registry=r)
        self.in_flight = Gauge("recsys_http_requests_in_flight", "Requests being answered", registry=r)
        self.events = Counter("recsys_events", "Events received, by result", ["status"], registry=r)
        self.ready = Gauge("recsys_ready", "1 when the store is reachable and an index generation is loaded",
                           registry=r)
        self.generation = Info("recsys_generation", "Loaded index generation and ranker version", registry=r)
        self.refresh_errors = Counter("recsys_refresh_errors", "Failed checks for newer generations", registry=r)

    def set_status(self, status: dict[str, Any], ready: bool) -> None:
        self.ready.set(1 if ready else 0)
        self.generation.info({k: str(status.get(k) or "") for k in ("index_generation", "ranker_version",
                                                                     "encoder_id")})

    def render(self) -> bytes:
        return generate_latest(self.registry)
