"""Prometheus metrics, one registry per app (so several apps in one process, e.g. in tests, never collide).

Under ``recsys serve --workers N`` each worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode, chosen when that variable is set before prometheus_client is imported), and
``/metrics`` from any worker sums them: one scrape sees every worker. Gauges are combined per their meaning: requests
in flight summed over live workers, readiness the minimum, the served generation the maximum.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest, values

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_GENERATION_KEYS = ("index_generation", "ranker_version", "encoder_id")


def multiprocess_mode() -> bool:
    """Whether this process writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (decided at prometheus_client's
    import, from the environment)."""
    return values.ValueClass is not values.MutexValue


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("recsys_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=r)
        self.latency = Histogram("recsys_http_request_duration_seconds", "Time to answer, by route", ["route"],
                                 buckets=_BUCKETS, registry=r)
        self.in_flight = Gauge("recsys_http_requests_in_flight", "Requests being answered", registry=r,
                               multiprocess_mode="livesum")
        self.events = Counter("recsys_events", "Events received, by result", ["status"], registry=r)
        self.ready = Gauge("recsys_ready", "1 when the store is reachable and an index generation is loaded",
                           registry=r, multiprocess_mode="livemin")
        self.refresh_errors = Counter("recsys_refresh_errors", "Failed checks for newer generations", registry=r)
        self.served_dropped = Counter("recsys_served_lists_dropped",
                                      "Served lists not recorded: the background writer's queue was full", registry=r)
        self._generation: Info | None = None
        self._generation_gauge: Gauge | None = None
        self._served: tuple[str, ...] | None = None
        if self.multiprocess:  # Info has no multiprocess form: the same series as a gauge, 1 for what is served
            self._generation_gauge = Gauge("recsys_generation_info", "Loaded index generation and ranker version",
                                           list(_GENERATION_KEYS), registry=r, multiprocess_mode="livemax")
        else:
            self._generation = Info("recsys_generation", "Loaded index generation and ranker version", registry=r)

    def set_status(self, status: dict[str, Any], ready: bool) -> None:
        self.ready.set(1 if ready else 0)
        served = tuple(str(status.get(k) or "") for k in _GENERATION_KEYS)
        if self._generation is not None:
            self._generation.info(dict(zip(_GENERATION_KEYS, served, strict=True)))
        elif self._generation_gauge is not None and served != self._served:
            if self._served is not None:  # a sample file keeps every label set: the old one reads 0
                self._generation_gauge.labels(*self._served).set(0)
            self._generation_gauge.labels(*served).set(1)
            self._served = served

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        """At a worker's exit: its live gauges (in flight, readiness, generation) stop counting."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
