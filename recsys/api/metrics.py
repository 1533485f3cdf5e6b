"""Prometheus metrics, one registry per app (so several apps in one process, e.g. in tests, never collide).

Under ``recsys serve --workers N`` each worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode, chosen when that variable is set before prometheus_client is imported), and
``/metrics`` from any worker sums them: one scrape sees every worker. Gauges are combined per their meaning: requests
in flight summed over live workers, readiness the minimum, the served generation the maximum. A worker that dies
without its lifespan's exit (SIGKILL, OOM) leaves its gauge files behind: each scrape first marks dead every process
whose live-gauge files are there but that no longer runs (:func:`prune_dead_workers`), so its gauges stop counting.

The event loop's PostgreSQL pool (``psycopg_pool``, :meth:`recsys.store.Store.pool_stats`) is sampled into gauges
(connections open and idle, reads waiting for one: summed over live workers) and error counters at each scrape and
each refresh round (``api.refresh_seconds``): one scrape sees its own worker's pool now and the others' as of their
last round.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest, values

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_GENERATION_KEYS = ("index_generation", "ranker_version", "encoder_id")
_POOL_ERRORS = {"connect": ("connections_errors",), "wait": ("requests_errors",),
                "lost": ("connections_lost", "returns_bad")}
"""Error counters of the pool, by kind: connections that could not be made, reads that gave up waiting for one,
connections found broken."""


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
                                      "Served lists not recorded: the background writer's queue was full, or the "
                                      "database refused a batch through every retry", registry=r)
        self.pool_size = Gauge("recsys_db_pool_connections", "Event-loop PostgreSQL connections open (idle or in use)",
                               registry=r, multiprocess_mode="livesum")
        self.pool_available = Gauge("recsys_db_pool_available", "Event-loop PostgreSQL connections idle in the pool",
                                    registry=r, multiprocess_mode="livesum")
        self.pool_waiting = Gauge("recsys_db_pool_waiting", "Reads waiting for an event-loop PostgreSQL connection",
                                  registry=r, multiprocess_mode="livesum")
        self.pool_errors = Counter("recsys_db_pool_errors", "Event-loop PostgreSQL pool errors: connect (a connection "
                                   "could not be made), wait (no connection in time), lost (found broken)", ["kind"],
                                   registry=r)
        for kind in _POOL_ERRORS:
            self.pool_errors.labels(kind)  # every series from the start, at 0
        self.pool_source: Callable[[], Mapping[str, int]] | None = None
        """Where :meth:`observe_pool` reads the pool's statistics (the app sets the store's ``pool_stats``)."""
        self._pool_seen: dict[str, int] = {}
        self._pool_lock = threading.Lock()
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

    def observe_pool(self) -> None:
        """Sample :attr:`pool_source` into the pool gauges, and its counters' growth since the last sample into
        ``recsys_db_pool_errors``. Never raises."""
        if self.pool_source is None:
            return
        try:
            stats = self.pool_source()
        except Exception:
            return
        with self._pool_lock:  # a scrape (the loop) and a refresh round (a thread) may sample at once
            self.pool_size.set(stats.get("pool_size", 0))
            self.pool_available.set(stats.get("pool_available", 0))
            self.pool_waiting.set(stats.get("requests_waiting", 0))
            for kind, keys in _POOL_ERRORS.items():
                now = sum(stats.get(k, 0) for k in keys)
                seen = self._pool_seen.get(kind, 0)
                if now > seen:
                    self.pool_errors.labels(kind).inc(now - seen)
                self._pool_seen[kind] = now  # lower: a pool was replaced (a new event loop) and counts from 0

    def render(self) -> bytes:
        self.observe_pool()
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if path:
            prune_dead_workers(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        """At a worker's exit: its live gauges (in flight, readiness, generation) stop counting."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def prune_dead_workers(path: str | os.PathLike[str]) -> list[int]:
    """Mark dead (prometheus_client's ``mark_process_dead``: their live-gauge files removed) the processes whose
    live-gauge files are in ``path`` but that no longer run: a worker killed without its :meth:`Metrics.close`
    (SIGKILL, OOM) would otherwise count in ``recsys_ready``, ``recsys_generation_info``, requests in flight and the
    pool gauges for as long as the server runs. Its counters and histograms stay: what it counted still counts.
    Assumes every writer of ``path`` runs on this host (its process ids are this host's). Returns the pids marked."""
    from prometheus_client import multiprocess

    pids = {f.stem.rsplit("_", 1)[-1] for f in Path(path).glob("gauge_live*_*.db")}
    dead = sorted(int(p) for p in pids if p.isdigit() and not _alive(int(p)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process; no pid of this host: left alone
        return True
    return True
