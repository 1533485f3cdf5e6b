"""The app factory: ``create_app(settings, recommender)`` wires routes, errors, limits and the lifespan.

The lifespan opens the :class:`~recsys.service.Recommender` (unless one is passed in) and runs one background task
that, every ``api.refresh_seconds``, picks up newer index / ranker generations (``refresh()``), caches ``status()``
and readiness, and reloads the API keys. Requests never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from recsys.api import docs, errors, tracing
from recsys.api.auth import KeyRing
from recsys.api.deps import RecommenderLike
from recsys.api.limits import RateLimiter
from recsys.api.metrics import Metrics
from recsys.api.middleware import RequestMiddleware
from recsys.api.routes.feeds import load_cursor_key
from recsys.config import Settings, get_settings
from recsys.errors import NoIndex, StoreUnavailable
from recsys.experiments import VariantItems, check_variant_rankers, load_experiments
from recsys.experiments.items import unknown_categories
from recsys.serving.threads import limit_compute_threads

log = logging.getLogger(__name__)

DESCRIPTION = """Multimodal recommendations: personalised and session recommendations, similar items, search by text
or image, "more like these", trending; items and events in; health, readiness and Prometheus metrics.

Authenticate with an API key (`recsys keys create NAME --scope read|events|admin`) sent as `X-API-Key` or a
bearer token.
Errors are RFC 9457 problems (`application/problem+json`: `type`, `title`, `status`, `detail`, `instance`) with a
stable `code` and the `request_id`; `error` repeats `{"code", "message", "request_id"}`. Rate-limited calls carry
`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`; 429 and 503 answers say when to retry (`Retry-After`)."""


class Runtime:
    """Per-app mutable state refreshed by the background task: cached status and readiness."""

    def __init__(self, recommender: RecommenderLike, metrics: Metrics, keys: KeyRing, *,
                 compute_threads: int = 0, freeze_heap: bool = False, db_timeout_s: float | None = 5.0,
                 warm_lists: bool = False) -> None:
        self.recommender = recommender
        self.warm_lists = warm_lists
        self._warming: tuple[Any, threading.Thread] | None = None
        """(the catalogue table whose neighbour lists are being or were computed ahead, its thread)."""
        self.db_timeout_s = db_timeout_s
        self.compute_threads = compute_threads
        self.freeze_heap = freeze_heap
        self._frozen_for: tuple[Any, ...] | None = None
        self._capped: set[str] = set()
        self.metrics = metrics
        self.keys = keys
        self.status: dict[str, Any] = {}
        self.store_ok = False
        self.migrated = True
        """False while the schema could not be brought up to date (the database was down at start-up)."""
        self.schema_error: str | None = None
        """Why the last try at bringing the schema up to date failed (``/readyz``'s reason), while it fails."""
        self._last_warning = 0.0
        self.store_mismatch: str | None = None
        self.store_denied: str | None = None
        """Why the database refuses this server's role a privilege its requests need (``/readyz``'s reason)."""
        """Why the database and the data directory look like different deployments' (``/readyz``'s reason)."""
        self._matched: str | None = None
        """The index generation last found to match the database."""
        self._sampled: tuple[str, list[str]] = ("", [])
        """(an index generation, the ids of it compared with the database)."""

    @property
    def ready(self) -> bool:
        # Without a ranker (never trained, or one that could not be loaded: retried) search still answers, so the
        # server stays ready; /readyz lists what is not served and why, for whoever routes recommendation traffic.
        return (self.store_ok and self.migrated and bool(self.status.get("ready"))
                and self.status.get("index_generation") is not None and self.store_mismatch is None
                and self.store_denied is None)

    def ping(self) -> bool:
        from recsys.store.deadline import bounded

        try:
            with bounded(self.db_timeout_s):  # a hung database is "not ready", not a hung probe
                return bool(self.recommender.store.ping())
        except Exception:
            return False

    def tick(self) -> None:
        """One refresh round (runs in a worker thread). Never raises."""
        rec = self.recommender
        self.store_ok = self.ping()
        if self.store_ok and not self.migrated:
            try:
                rec.store.upgrade()
                self.migrated, self.schema_error = True, None
                log.info("the database answers again: schema up to date, serving")
            except Exception as e:  # down or busy again: still an outage, not a failed migration
                self.schema_error = None if isinstance(e, StoreUnavailable) else (
                    f"the database schema could not be brought up to date: {getattr(e, 'message', e)}")
                self._warn("could not bring the database schema up to date: %s", e)
        try:
            rec.refresh()
        except Exception as e:  # e.g. nothing built yet: status() below says so, for /readyz
            if not isinstance(e, NoIndex):  # no index (yet): a state /readyz reports, not a failed check
                self.metrics.refresh_errors.inc()
            self._warn("could not refresh generations: %s", e)
        try:
            self.status = dict(rec.status())
        except Exception as e:
            self._warn("could not read what is served: %s", e)
        if self.store_ok and self.keys.stale():
            try:
                self.keys.reload()
            except Exception as e:
                self._warn("could not reload API keys: %s", e)
        self._check_store()
        self._check_privileges()
        limit_compute_threads(self.compute_threads, self._capped)
        self.metrics.set_status(self.status, self.ready)
        self.metrics.observe_pool()
        if self.warm_lists:
            self._warm()
        served = (self.status.get("index_generation"), self.status.get("ranker_version"))
        if self.freeze_heap and served != self._frozen_for:
            self._frozen_for = served
            settle_heap()

    def _check_privileges(self) -> None:
        """Each round: may this server's role read what every request reads? A ping (``SELECT 1``) passes for a role
        whose table privileges were revoked, and the server stayed ready while every request answered 500."""
        from recsys.errors import StoreDenied
        from recsys.store.deadline import bounded
        from recsys.store.queries import DETAILS_VERSION

        if not (self.store_ok and self.migrated) or getattr(self.recommender, "store", None) is None:
            return
        try:
            with bounded(self.db_timeout_s), self.recommender.store.reading() as c:
                c.execute(DETAILS_VERSION)
        except StoreDenied as e:
            if self.store_denied is None:
                log.error("%s; not ready until it is granted (/readyz answers 503)", e.message)
            self.store_denied = e.message
            return
        except Exception:  # an outage or a store without the table (a test double): the ping and status say so
            return
        if self.store_denied is not None:
            log.info("the database grants this server what its requests read again: ready")
        self.store_denied = None

    def _check_store(self) -> None:
        """Once per served index generation (and each round while they differ): does the database know its items?
        A replica on the shared data directory but another deployment's (or an empty) database is kept out of
        rotation, not left serving ids it cannot describe (and publishing its catalogue as everyone's)."""
        from recsys.index.store_match import mismatch, sample_ids
        from recsys.store.deadline import bounded

        gid = self.status.get("index_generation")
        reader = getattr(getattr(getattr(self.recommender, "generations", None), "loaded", None), "reader", None)
        settings = getattr(self.recommender, "settings", None)
        if (not self.store_ok or gid is None or gid == self._matched or reader is None or settings is None
                or reader.generation_id != gid):
            return
        if self._sampled[0] != gid:
            self._sampled = (gid, sample_ids(reader.item_ids))
        try:
            with bounded(self.db_timeout_s):
                why = mismatch(self.recommender.store, settings, gid, self._sampled[1])
        except Exception as e:  # an outage: judged on a later round
            self._warn("could not compare the database with the served index: %s", e)
            return
        if why is not None and why != self.store_mismatch:
            log.error("%s; not ready until they match (/readyz answers 503)", why)
        elif why is None and self.store_mismatch is not None:
            log.info("the database now knows the served index's items: ready")
        self.store_mismatch, self._matched = why, (gid if why is None else None)

    def _warm(self) -> None:
        """Once per served catalogue, compute its kept neighbour lists and load its query encoder in a background
        thread, so that requests after a new generation do not pay for them on first sight
        (``ranking.warm_lists_max``)."""
        generations: Any = getattr(self.recommender, "generations", None)
        ranker = getattr(getattr(generations, "loaded", None), "ranker", None)
        table = getattr(ranker, "_table", None)
        if generations is None or table is None or (self._warming is not None and (self._warming[0] is table
                                                            or self._warming[1].is_alive())):
            return  # done or under way (a thread for a replaced catalogue stops at its next block)

        def run() -> None:
            t0 = time.perf_counter()
            try:
                made = generations.warm_lists()
            except Exception:
                log.exception("could not compute the neighbour lists ahead; they are computed on first sight")
                return
            if made:
                log.info("computed %d neighbour lists ahead in %.1f s", made, time.perf_counter() - t0)
            try:  # the query encoder too: else the first text or image search after a start waits seconds for it
                getattr(self.recommender, "encoder", None)  # a property: reading it loads the encoder
            except Exception as e:
                log.warning("could not load the query encoder ahead (%s); it loads on the first search", e)

        thread = threading.Thread(target=run, name="recsys-warm-lists", daemon=True)
        self._warming = (table, thread)
        thread.start()

    def _warn(self, msg: str, e: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 30:  # an outage logs twice a minute, not once a second
            self._last_warning = now
            log.warning(msg, f"{type(e).__name__}: {str(e)[:300]}")


def create_app(settings: Settings | None = None, recommender: RecommenderLike | None = None) -> FastAPI:
    """The FastAPI app. With ``recommender=None`` the lifespan opens a :class:`recsys.service.Recommender`."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = recommender is None
        if settings.api.worker_threads > 0:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api.worker_threads
        rec: Any = recommender
        migrated = True
        if rec is None:
            rec, migrated = await run_in_threadpool(open_service, settings)
        # Thread caps are process-wide: applied only when this app owns the service (a server), not to a caller's.
        threads = settings.api.compute_threads if owned else 0
        runtime = Runtime(rec, metrics, KeyRing(rec.store), compute_threads=threads, freeze_heap=owned,
                          db_timeout_s=settings.store.request_read_timeout_s, warm_lists=owned)
        runtime.migrated = migrated
        metrics.pool_source = getattr(rec.store, "pool_stats", None)
        app.state.recommender = rec
        app.state.runtime = runtime
        app.state.served = served_log(rec, settings, metrics)
        app.state.cursor_key = await run_in_threadpool(load_cursor_key, settings)
        app.state.keys = runtime.keys
        # variants' pins, boosts and bury naming items or categories the catalogue lacks are logged (not refused:
        # items come later)
        await run_in_threadpool(app.state.variant_items.check, rec.catalogue.unknown_items,
                                functools.partial(unknown_categories, rec.catalogue))
        await run_in_threadpool(runtime.tick)
        task = asyncio.create_task(_refresh_loop(runtime, settings.api.refresh_seconds))
        log.info("recsys API ready=%s status=%s", runtime.ready, runtime.status)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await run_in_threadpool(app.state.served.close)
            if owned and hasattr(rec, "store"):
                await rec.store.aclose()
                rec.store.dispose()
            metrics.close()

    app = FastAPI(title="recsys", version=_version(), description=DESCRIPTION, lifespan=lifespan,
                  responses=_error_responses(), generate_unique_id_function=_operation_id,
                  docs_url=None, redoc_url=None)  # served from local assets by recsys.api.docs
    app.state.settings = settings
    # a bad definition, or a variant's ranker generation that is not stored, fails here, at start-up
    app.state.experiments = check_variant_rankers(load_experiments(settings), settings)
    app.state.variant_items = VariantItems(app.state.experiments)
    app.state.metrics = metrics
    app.state.limiter = RateLimiter(settings.api.rate_limit_per_minute, settings.api.rate_limit_storage,
                                    settings.api.rate_limit_strategy)
    errors.install(app)
    docs.install(app)
    _routes(app)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.api.max_body_bytes,
                       loopback_only=not settings.api.auth, db_timeout_s=settings.store.request_read_timeout_s)
    if settings.api.cors_origins:  # outside RequestMiddleware: its own 413, 403 and 500 answers carry the headers too
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Request-ID", "Retry-After", "RateLimit-Limit",
                                                               "RateLimit-Remaining", "RateLimit-Reset"])
    tracing.install(app, settings)  # outermost: a request's span covers the middleware too; a no-op when off
    return app


def open_service(settings: Settings) -> tuple[Any, bool]:
    """The server's :class:`~recsys.service.Recommender` and whether its schema is up to date. A database that
    does not answer at start-up is not fatal: the server starts unready (``/readyz`` 503, requests 503 with
    Retry-After) and the refresh task migrates and serves once it answers."""
    from recsys.service import Recommender
    from recsys.store import Store

    store = Store.open(settings, upgrade=False)
    try:
        store.upgrade()
        migrated = True
    except StoreUnavailable as e:
        log.warning("starting unready: %s", e.message)
        migrated = False
    return Recommender(settings, store), migrated


def served_log(rec: Any, settings: Settings, metrics: Metrics) -> Any:
    """The background writer of served lists (``recsys.feedback``) over the service's store."""
    from recsys.feedback import ServedLog

    fb = settings.feedback
    return ServedLog(rec.store, queue_size=fb.queue_size, batch_size=fb.batch_size, enabled=fb.record_served,
                     on_drop=metrics.served_dropped.inc)


def settle_heap() -> None:
    """Move every object alive now (models, indexes, tables: ~340k objects in the demo server) out of the cyclic
    garbage collector's reach. Without this each full collection walks them all: a 114 ms pause (measured in the
    demo server) every few thousand requests. Called once the served generations are loaded and again after each
    switch (unfreezing first, so cycles left by the old generation are still collected)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


_ERRORS = {
    400: "malformed request (e.g. an unreadable multipart body)",
    401: "no API key, or an unknown or revoked one",
    403: "the key's scope does not allow this call",
    404: "unknown item, user or route",
    413: "request body or uploaded image over the limits",
    422: "invalid input",
    429: "rate limited (Retry-After says when to try again)",
    503: "the database is unreachable or busy, or nothing is served yet (Retry-After says when to try again)",
}


def _error_responses() -> dict[int | str, dict[str, Any]]:
    """The error answers any operation may give, documented on every one (clients and schema checkers rely on the
    documented codes)."""
    from recsys.api.schemas import ErrorResponse

    return {code: {"description": text, "model": ErrorResponse} for code, text in _ERRORS.items()}


def _operation_id(route: Any) -> str:
    """Stable operationIds for generated clients: the route function's name (``recommend``, ``put_item``...)."""
    return str(route.name)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recsys")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0+unknown"


def _routes(app: FastAPI) -> None:
    from recsys.api.routes import events, health, items, recommendations, search, web
    from recsys.api.routes.experiments import router as experiments
    from recsys.api.routes.feedback import router as feedback

    for module in (health, items, events, recommendations, search, web):
        app.include_router(module.router)
    app.include_router(feedback)
    app.include_router(experiments)


async def _refresh_loop(runtime: Runtime, every: float) -> None:
    while True:
        await asyncio.sleep(max(0.05, every))
        await run_in_threadpool(runtime.tick)


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory recsys.api.app:app_from_env`` and each ``recsys serve --workers`` process: settings
    and logging (``RECSYS_LOG_LEVEL``, ``RECSYS_LOG_FORMAT``) from the environment."""
    import os

    from recsys.api.logs import configure
    from recsys.config_checks import log_format, log_level
    from recsys.errors import ConfigError

    try:
        level, json_lines = log_level(os.environ, "INFO"), log_format(os.environ, "json") == "json"
    except ConfigError as e:  # one line, as the CLI says it, not a traceback from inside uvicorn
        log.error("error [config]: %s", e.message)
        raise SystemExit(2) from None
    configure(level, json_lines=json_lines)
    return create_app(get_settings())
