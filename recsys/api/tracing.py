"""A server span per request through ``opentelemetry-instrumentation-fastapi`` when tracing is on (see
:mod:`recsys.tracing`); without it the app is left untouched and nothing from OpenTelemetry is imported."""

from __future__ import annotations

import logging
import os
from typing import Any

from recsys import tracing

log = logging.getLogger(__name__)

EXCLUDED_URLS = "healthz,readyz,metrics"
"""Probes and scrapes make no spans (``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` overrides)."""


def install(app: Any, settings: Any, tracer_provider: Any = None) -> bool:
    """Instrument ``app`` when tracing is wanted (or a ``tracer_provider`` is given); True when it was."""
    if tracer_provider is None and not tracing.wanted(settings):
        return False
    provider = tracing.enable(tracer_provider)
    if provider is None:
        return False
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:
        log.warning("tracing is on but opentelemetry-instrumentation-fastapi is missing: no request spans "
                    "(pip install 'recsys[otel]')")
        return False
    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", EXCLUDED_URLS)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=excluded)
    log.info("OpenTelemetry tracing on (request spans, recommendation phases)")
    return True
