"""Optional OpenTelemetry tracing (the ``recsys[otel]`` extra): a span per API request, child spans for the
candidates, ranking and rules phases of recommendations.

Off unless ``RECSYS_API__OTEL=true``, or an OpenTelemetry exporter is named in the environment the way the
OpenTelemetry specification defines it (``OTEL_TRACES_EXPORTER`` other than ``none``, ``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` always wins. When off, nothing from
OpenTelemetry is imported and the hooks in the code cost one global read.

When on, a tracer provider already set up by the host (``opentelemetry-instrument``, an embedding application, a
test) is used as it is; otherwise one is made from the standard variables: ``OTEL_SERVICE_NAME`` (default
``recsys``), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, and ``OTEL_TRACES_EXPORTER`` (``otlp``, the
default, sends OTLP over HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``console`` prints spans; ``none`` exports nothing).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

_tracer: Any = None
"""The tracer while tracing is on; None when off (the only thing the hot paths look at)."""

_EXPORTER_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(settings: Any = None) -> bool:
    """Whether tracing is asked for, by ``settings.api.otel`` or the standard OTEL_* variables."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    api = getattr(settings, "api", None)
    if api is not None and getattr(api, "otel", False):
        return True
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return (exporter not in ("", "none")) or any(env.get(k) for k in _EXPORTER_VARS)


def active() -> bool:
    return _tracer is not None


def enable(tracer_provider: Any = None) -> Any | None:
    """Turn tracing on; returns the tracer provider in use, or None (with a warning) when the extra is missing."""
    global _tracer
    try:
        from opentelemetry import trace
    except ImportError:
        log.warning("OpenTelemetry tracing was asked for but is not installed: pip install 'recsys[otel]'")
        return None
    provider = tracer_provider or _provider()
    if provider is None:
        return None
    _tracer = trace.get_tracer("recsys", _version(), tracer_provider=provider)
    return provider


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recsys")
    except PackageNotFoundError:
        return None


def disable() -> None:
    """Turn the hooks off again (spans already started still end)."""
    global _tracer
    _tracer = None


def _provider() -> Any | None:
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if hasattr(current, "add_span_processor"):  # an SDK provider the host already configured
        return current
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OpenTelemetry tracing needs the SDK: pip install 'recsys[otel]'")
        return None
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "recsys"}
    provider = TracerProvider(resource=Resource.create(attrs))  # reads OTEL_RESOURCE_ATTRIBUTES, the sampler
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _exporter() -> Any | None:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower() or "otlp"
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("no OTLP exporter installed (pip install opentelemetry-exporter-otlp-proto-http): "
                        "spans are recorded but not exported")
            return None
        return OTLPSpanExporter()  # endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*
    log.warning("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console, none): spans are not exported", name)
    return None


def record_phases(phases: Sequence[tuple[str, float, float]], attributes: Mapping[str, Any] | None = None) -> None:
    """Child spans of the current span for phases already timed with ``time.perf_counter()`` as (name, start, end):
    the code measures its phases anyway, so tracing adds no context managers to the hot path."""
    tracer = _tracer
    if tracer is None:
        return
    now_ns, now = time.time_ns(), time.perf_counter()
    for name, start, end in phases:
        span = tracer.start_span(name, start_time=now_ns - int((now - start) * 1e9), attributes=attributes)
        span.end(end_time=now_ns - int((now - end) * 1e9))
