"""OpenTelemetry tracing (``recsys[otel]``): off by default with nothing imported; when on, a span per request with
the recommendation phases as its children, recorded by the SDK's in-memory exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys import tracing
from recsys.api import create_app
from recsys.api.testing import FakeRecommender
from recsys.store import Store
from tests.api.conftest import CATALOGUE, api_settings

REPO = Path(__file__).resolve().parents[2]

OFF = """
import json, sys
from recsys.api import create_app
from recsys.config import Settings
from recsys import tracing
app = create_app(Settings(home=sys.argv[1]))
print(json.dumps({"active": tracing.active(),
                  "instrumented": bool(getattr(app, "_is_instrumented_by_opentelemetry", False)),
                  "imported": sorted(m for m in sys.modules
                                     if m.startswith(("opentelemetry.sdk", "opentelemetry.instrumentation")))}))
"""


def test_off_by_default_nothing_is_imported_or_instrumented(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RECSYS_"))}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", OFF, str(tmp_path / "home")], env=env, cwd=REPO, text=True,
                         capture_output=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"active": False, "instrumented": False, "imported": []}


@pytest.mark.parametrize(("env", "otel", "expected"), [
    ({}, False, False),
    ({}, True, True),
    ({"OTEL_TRACES_EXPORTER": "none"}, False, False),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, False, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False, True),
    ({"OTEL_SDK_DISABLED": "true"}, True, False),
])
def test_wanted_follows_the_setting_and_the_otel_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            env: dict[str, str], otel: bool, expected: bool) -> None:
    for k in list(os.environ):
        if k.startswith("OTEL_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert tracing.wanted(api_settings(tmp_path, otel=otel)) is expected


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An SDK tracer provider writing to memory, handed to recsys in place of one built from the environment."""
    pytest.importorskip("opentelemetry.sdk")
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "_provider", lambda: provider)
    yield memory
    tracing.disable()


class RankingFake(FakeRecommender):
    """The fake, but its recommendations also run a tiny real ranking pipeline (the phases that make spans)."""

    def __init__(self, store: Store, pipe: Any) -> None:
        super().__init__(store, CATALOGUE)
        self.pipe = pipe

    def recommend(self, user_id: str, k: int = 20, **kw: Any) -> Any:
        from tests.ranking.fixtures import user_events

        self.pipe.recommend(user_events(["hat-red-0", "hat-red-1"]), k=3)
        return super().recommend(user_id, k, **kw)


def test_request_span_with_recommendation_phases_as_children(exporter: Any, sqlite_store: Store,
                                                             tmp_path: Path) -> None:
    from recsys.ranking import RankingPipeline
    from tests.ranking.fixtures import make_world, small_params

    world = make_world(per_combo=2, users_per_combo=2, events_per_user=4)
    pipe = RankingPipeline.fit(world.events, world.items, world.vectors, params=small_params(epochs=1))
    app = create_app(api_settings(tmp_path, otel=True), RankingFake(sqlite_store, pipe))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200  # probes make no spans
        assert client.get("/v1/users/u1/recommendations?k=3").status_code == 200
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert len(server) == 1 and server[0].attributes.get("http.route") == "/v1/users/{user_id}/recommendations"
    phases = {s.name: s for s in spans if s.name.startswith("recsys.")}
    assert set(phases) == {"recsys.candidates", "recsys.ranking", "recsys.rules"}
    for s in phases.values():
        assert s.parent is not None and s.context.trace_id == server[0].context.trace_id
        assert s.start_time <= s.end_time and s.attributes["recsys.requests"] == 1
    assert phases["recsys.candidates"].end_time <= phases["recsys.ranking"].start_time + 1_000  # in order (1 us slack)

    exporter.clear()
    tracing.disable()  # off again: the pipeline records nothing
    pipe.recommend(None, k=3)
    assert exporter.get_finished_spans() == ()
